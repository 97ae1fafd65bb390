import { Health } from './health';
import { createLogger } from './logger';
import { closeInOrder, installShutdown, runShutdownSteps, stoppingOnFailure, type ShutdownStep } from './shutdown';

const recording = (log: string[], name: string, fail = false): ShutdownStep => ({
  name,
  run: async () => {
    log.push(name);
    if (fail) throw new Error(`${name} failed`);
  },
});

describe('runShutdownSteps', () => {
  it('runs every step in order, past a failing one, and returns the failures', async () => {
    const log: string[] = [];
    const failures = await runShutdownSteps([recording(log, 'grpc'), recording(log, 'http', true), recording(log, 'etcd')]);
    expect(log).toEqual(['grpc', 'http', 'etcd']);
    expect(failures.map((f) => f.step)).toEqual(['http']);
  });
});

describe('closeInOrder', () => {
  it('drains readiness before the first step and runs the steps once however often it is called', async () => {
    const health = new Health();
    const log: string[] = [];
    const close = closeInOrder(health, [
      { name: 'check readiness', run: async () => void log.push(`ready=${(await health.readiness()).ready}`) },
      recording(log, 'http'),
    ]);
    await Promise.all([close(), close()]);
    await close();
    expect(log).toEqual(['ready=false', 'http']);
  });

  it('rejects naming the steps that failed, after running the rest', async () => {
    const log: string[] = [];
    const close = closeInOrder(new Health(), [recording(log, 'grpc', true), recording(log, 'redis')]);
    await expect(close()).rejects.toThrow('shutdown steps failed: grpc');
    expect(log).toEqual(['grpc', 'redis']);
  });
});

describe('stoppingOnFailure', () => {
  it('passes a start through untouched, and on a failed one stops first, then rejects with the start error', async () => {
    const events: string[] = [];
    const close = () => {
      events.push('close');
      return Promise.resolve();
    };
    const guard = stoppingOnFailure(close, { error: () => events.push('logged') });
    await expect(guard(Promise.resolve(7))).resolves.toBe(7);
    expect(events).toEqual([]);
    const bind = new Error('EADDRINUSE');
    await expect(guard(Promise.reject(bind))).rejects.toBe(bind);
    expect(events).toEqual(['close']);
  });

  it("keeps the start's error when stopping fails too, and logs the stop's", async () => {
    const logged: unknown[] = [];
    const guard = stoppingOnFailure(() => Promise.reject(new Error('revoke failed')), { error: (obj: unknown) => logged.push(obj) });
    const bind = new Error('EADDRINUSE');
    await expect(guard(Promise.reject(bind))).rejects.toBe(bind);
    expect(logged).toEqual([{ err: new Error('revoke failed') }]);
  });
});

describe('installShutdown', () => {
  it('exits 1 when a step fails and 0 when none does', async () => {
    const logger = createLogger('test', 'silent');
    const codes: number[] = [];
    const ok = installShutdown({ logger, health: new Health(), steps: [recording([], 'a')], exit: (code) => codes.push(code) });
    await ok();
    const failing = installShutdown({ logger, health: new Health(), steps: [recording([], 'b', true)], exit: (code) => codes.push(code) });
    await failing();
    expect(codes).toEqual([0, 1]);
  });
});
