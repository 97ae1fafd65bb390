import { Health } from './health';

describe('Health', () => {
  it('is ready only when every check passes and it is not draining', async () => {
    const health = new Health();
    let etcd = false;
    health.addCheck('etcd', () => etcd);
    health.addCheck('snapshot', async () => true);
    expect(await health.readiness()).toEqual({ ready: false, checks: { etcd: false, snapshot: true, draining: false } });
    etcd = true;
    expect((await health.readiness()).ready).toBe(true);
    health.startDraining();
    expect(await health.readiness()).toEqual({ ready: false, checks: { etcd: true, snapshot: true, draining: true } });
  });

  it('counts a check that throws as failing', async () => {
    const health = new Health();
    health.addCheck('broken', () => {
      throw new Error('boom');
    });
    expect(await health.readiness()).toEqual({ ready: false, checks: { broken: false, draining: false } });
  });

  it('tells listeners about each transition once, when a recheck finds it', async () => {
    const health = new Health();
    let ok = false;
    health.addCheck('dep', () => ok);
    const heard: boolean[] = [];
    health.onChange((ready) => heard.push(ready));
    await health.recheck();
    await health.recheck();
    ok = true;
    await health.recheck();
    await health.recheck();
    expect(heard).toEqual([false, true]);
    expect(health.isReady).toBe(true);
    health.startDraining();
    await health.recheck();
    expect(heard).toEqual([false, true, false]);
  });

  it('never lets a slow, older evaluation overwrite a newer one', async () => {
    const health = new Health();
    let release: (value: boolean) => void = () => undefined;
    let slow = true;
    health.addCheck('dep', () => (slow ? new Promise<boolean>((resolve) => (release = resolve)) : true));
    const older = health.recheck();
    slow = false;
    expect(await health.recheck()).toBe(true);
    release(false);
    expect(await older).toBe(false);
    expect(health.isReady).toBe(true);
  });

  it('whenReady resolves on the recheck that finds it ready', async () => {
    const health = new Health();
    let ok = false;
    health.addCheck('dep', () => ok);
    let resolved = false;
    const ready = health.whenReady().then(() => (resolved = true));
    await health.recheck();
    await Promise.resolve();
    expect(resolved).toBe(false);
    ok = true;
    await health.recheck();
    await ready;
    expect(resolved).toBe(true);
    // Already ready: resolves at once.
    await health.whenReady();
  });

  it('stops telling a listener that has unsubscribed', async () => {
    const health = new Health();
    const heard: boolean[] = [];
    const stop = health.onChange((ready) => heard.push(ready));
    await health.recheck();
    stop();
    health.startDraining();
    await health.recheck();
    expect(heard).toEqual([true]);
  });
});
