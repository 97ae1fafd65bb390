import { activeResources, nothingLeftOpenSince, resourcesAddedSince } from './active-resources';

describe('nothingLeftOpenSince', () => {
  it('resolves when nothing was opened', async () => {
    await expect(nothingLeftOpenSince(activeResources(), 'nothing opened', 10_000, 200)).resolves.toBeUndefined();
  });

  it('waits for what is closing to close', async () => {
    const before = activeResources();
    const closing = setTimeout(() => undefined, 300);
    await nothingLeftOpenSince(before, 'the timer to fire', 10_000, 200);
    expect(resourcesAddedSince(before)).toEqual({});
    clearTimeout(closing);
  });

  it('catches what opens after a first clean look', async () => {
    const before = activeResources();
    let late: NodeJS.Timeout | undefined;
    // Not ref'd, so the first look is clean; it opens a ref'd interval 100 ms later, inside the settle window.
    setTimeout(() => {
      late = setInterval(() => undefined, 60_000);
    }, 100).unref();
    try {
      await expect(nothingLeftOpenSince(before, 'nothing left open', 3_000, 1_000)).rejects.toThrow(/still open: \{"Timeout":1\}/);
    } finally {
      clearInterval(late);
    }
  });
});
