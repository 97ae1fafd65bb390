import { SingleFlight } from './single-flight';

describe('SingleFlight', () => {
  it('runs concurrent work for one key once and shares the result', async () => {
    const flights = new SingleFlight<number>();
    let runs = 0;
    let release!: (n: number) => void;
    const work = () => {
      runs += 1;
      return new Promise<number>((resolve) => (release = resolve));
    };
    const results = Promise.all([flights.run('a→b', work), flights.run('a→b', work), flights.run('a→b', work)]);
    release(42);
    await expect(results).resolves.toEqual([42, 42, 42]);
    expect(runs).toBe(1);
    expect(flights.size).toBe(0);
  });

  it('forgets a failed flight so the next call tries again', async () => {
    const flights = new SingleFlight<string>();
    await expect(flights.run('k', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(flights.run('k', async () => 'ok')).resolves.toBe('ok');
  });

  it('keeps different keys apart', async () => {
    const flights = new SingleFlight<string>();
    await expect(Promise.all([flights.run('a', async () => 'A'), flights.run('b', async () => 'B')])).resolves.toEqual(['A', 'B']);
  });
});
