import { eventually } from './eventually';

describe('eventually', () => {
  it('resolves with the first value that is neither undefined nor false, keeping falsy values such as 0', async () => {
    const answers: Array<number | undefined | false> = [undefined, false, 0];
    await expect(eventually('a value', () => answers.shift())).resolves.toBe(0);
  });

  it('fails at once when the probe throws, unless told throws mean "not yet"', async () => {
    let calls = 0;
    const probe = async () => {
      calls++;
      if (calls < 3) throw new Error('refused');
      return 'up';
    };
    await expect(eventually('a server', probe)).rejects.toThrow('refused');
    expect(calls).toBe(1);
    calls = 0;
    await expect(eventually('a server', probe, 30_000, { retryErrors: true, intervalMs: 1 })).resolves.toBe('up');
    expect(calls).toBe(3);
  });

  it('names what it waited for, the last throw and the diagnosis when the deadline passes', async () => {
    const waiting = eventually(
      'the pool to fill',
      () => {
        throw new Error('connection refused');
      },
      50,
      { retryErrors: true, intervalMs: 5, diagnose: () => '--- etcd\nstarting' },
    );
    await expect(waiting).rejects.toThrow(
      'timed out after 50 ms waiting for the pool to fill (the last probe threw: connection refused)\n--- etcd\nstarting',
    );
  });

  it('says nothing of a throw that a later probe answered', async () => {
    let calls = 0;
    const waiting = eventually(
      'a ready flag',
      () => {
        if (++calls === 1) throw new Error('refused');
        return false;
      },
      30,
      { retryErrors: true, intervalMs: 5 },
    );
    await expect(waiting).rejects.toThrow(/^timed out after 30 ms waiting for a ready flag$/);
  });
});
