// EtcdProbe against a real etcd that is frozen (SIGSTOP) and thawed: the watch
// stream would not notice for up to 90 s; the probe says so within its deadline. A busy
// event loop (turns longer than the deadline) is not taken for a silent etcd.
import { busyTurns, eventually, startEtcd, type TestEtcd } from '@trellis/testing';
import { connectEtcd } from '../src/etcd-client';
import { EtcdProbe } from '../src/etcd-probe';
import { KeyLayout } from '../src/keys';

jest.setTimeout(120_000);

let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.resume().catch(() => undefined);
  await etcd?.close();
});

it('fails a check within its deadline while etcd is frozen, and passes again once it is thawed', async () => {
  if (!etcd.canRestart) return void console.warn('etcd-probe: this etcd cannot be frozen here; nothing to test');
  const client = connectEtcd({ endpoints: etcd.endpoints });
  const changes: boolean[] = [];
  const probe = new EtcdProbe(client, {
    key: new KeyLayout(etcd.prefix).meshSettings(),
    // Generous, so a healthy etcd on a loaded machine always answers in time; a frozen one misses any deadline.
    timeoutMs: 20_000,
    onChange: (h) => changes.push(h),
  });
  try {
    expect(await probe.check()).toBe(true);
    await etcd.pause();
    const t0 = Date.now();
    expect(await probe.check()).toBe(false);
    console.log(`frozen etcd noticed by the probe after ${Date.now() - t0} ms`);
    await etcd.resume();
    // Generous: a loaded machine may take a while to schedule the thawed etcd.
    await eventually('the thawed etcd to answer the probe', () => probe.check(), 30_000, { intervalMs: 200 });
    expect(changes).toEqual([true, false, true]);
  } finally {
    probe.stop();
    client.close();
  }
});

it('does not take a busy event loop for a silent etcd', async () => {
  const client = connectEtcd({ endpoints: etcd.endpoints });
  const changes: boolean[] = [];
  // Turns longer than the deadline: each probe's answer is in the socket before its timer fires, but is read after it.
  const probe = new EtcdProbe(client, {
    key: new KeyLayout(etcd.prefix).meshSettings(),
    intervalMs: 200,
    timeoutMs: 5_000,
    onChange: (h) => changes.push(h),
  });
  try {
    await probe.start();
    expect(changes).toEqual([true]);
    await busyTurns(3, 6_000);
    await probe.check();
    expect(changes).toEqual([true]);
  } finally {
    probe.stop();
    client.close();
  }
});
