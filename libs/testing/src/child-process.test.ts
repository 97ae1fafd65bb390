import { withPortRetry } from './child-process';

describe('withPortRetry', () => {
  it('starts again after a lost port race, and only then', async () => {
    let calls = 0;
    const flaky = async () => {
      calls += 1;
      if (calls < 3) throw new Error('etcd exited before it became ready. Output: bind: address already in use');
      return 'up';
    };
    await expect(withPortRetry(flaky)).resolves.toBe('up');
    expect(calls).toBe(3);
    await expect(withPortRetry(async () => Promise.reject(new Error('permission denied')))).rejects.toThrow('permission denied');
  });
});
