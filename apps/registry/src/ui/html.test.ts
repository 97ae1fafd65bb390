import { escapeHtml, html, join } from './html';

describe('html', () => {
  it('escapes interpolated strings', () => {
    expect(html`<p title="${'"x" onmouseover=alert(1)'}">${'<script>alert(1)</script>'}</p>`.value).toBe(
      '<p title="&quot;x&quot; onmouseover=alert(1)">&lt;script&gt;alert(1)&lt;/script&gt;</p>',
    );
  });

  it('does not double-escape nested fragments and flattens arrays', () => {
    const items = ['a&b', '<c>'].map((s) => html`<li>${s}</li>`);
    expect(html`<ul>${items}</ul>`.value).toBe('<ul><li>a&amp;b</li><li>&lt;c&gt;</li></ul>');
  });

  it('renders nothing for null, undefined and false but keeps 0', () => {
    expect(html`[${null}${undefined}${false}${0}]`.value).toBe('[0]');
  });

  it('escapes quotes and backticks', () => {
    expect(escapeHtml(`'\`&`)).toBe('&#39;&#96;&amp;');
    expect(join([html`<b>`, 'x<'], ' ').value).toBe('<b> x&lt;');
  });
});
