import { lineDiff } from './line-diff';

describe('lineDiff', () => {
  it('keeps common lines and shows a change as removal then addition', () => {
    expect(lineDiff('a\nport: 1\nc\n', 'a\nport: 2\nc\n')).toEqual(['  a', '- port: 1', '+ port: 2', '  c']);
  });
  it('shows a new document as all additions, an equal one as no change', () => {
    expect(lineDiff('', 'a\nb\n')).toEqual(['+ a', '+ b']);
    expect(lineDiff('a\n', 'a\n')).toEqual(['  a']);
  });
});
