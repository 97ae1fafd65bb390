// connectEtcd's fault policy and rangePrefix's pagination against a real etcd.
import { startEtcd, type TestEtcd } from '@trellis/testing';
import { GRPCDeadlineExceededError } from 'etcd3';
import { connectEtcd, rangePrefix } from '../src/etcd-client';

let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.close();
});

it('pages through a prefix, every page at the first page revision', async () => {
  const client = etcd.client();
  const key = (i: number) => `${etcd.prefix}page/${String(i).padStart(3, '0')}`;
  for (let i = 0; i < 25; i++) await client.put(key(i)).value(`v${i}`);
  await client.put(`${etcd.prefix}pagf`).value('just past the prefix');
  const { revision } = await rangePrefix(client, `${etcd.prefix}page/`);

  // Change the range after the revision we will read at.
  await client.delete().key(key(3));
  await client.put(key(99)).value('later');
  await client.put(key(4)).value('changed');

  const read = await rangePrefix(client, `${etcd.prefix}page/`, revision, 10);
  expect(read.revision).toBe(revision);
  expect(read.kvs.map((kv) => kv.key.toString())).toEqual(Array.from({ length: 25 }, (_, i) => key(i)));
  expect(read.kvs[4]!.value.toString()).toBe('v4');

  const now = await rangePrefix(client, `${etcd.prefix}page/`, undefined, 7);
  expect(now.kvs).toHaveLength(25); // 25 - deleted 3 + added 99
  expect(BigInt(now.revision)).toBeGreaterThan(BigInt(revision));
});

it('works again as soon as etcd is back (no circuit breaker held open)', async () => {
  if (!etcd.canRestart) {
    console.warn('skipped: this etcd cannot be restarted (TRELLIS_TEST_ETCD_ENDPOINTS or a container)');
    return;
  }
  const client = connectEtcd({ endpoints: etcd.endpoints, callTimeoutMs: 1_000 });
  try {
    await client.put(`${etcd.prefix}k`).value('1');
    await etcd.stop();
    await expect(client.get(`${etcd.prefix}k`).string()).rejects.toThrow();
    await expect(client.get(`${etcd.prefix}k`).string()).rejects.toThrow();
    await etcd.start();
    // etcd3's default policy would refuse every call for 5 s after those failures (a
    // BrokenCircuitError at once): the first call after the restart must reach etcd.
    expect(await client.get(`${etcd.prefix}k`).string()).toBe('1');
  } finally {
    client.close();
  }
});

it('still fails a call to a frozen etcd at the call timeout (its own deadline, not the longer gRPC one)', async () => {
  if (!etcd.canRestart) return void console.warn('skipped: this etcd cannot be frozen here');
  const client = connectEtcd({ endpoints: etcd.endpoints, callTimeoutMs: 1_000 });
  try {
    await client.put(`${etcd.prefix}frozen`).value('1');
    await etcd.pause();
    // Three attempts of 1 s each, well inside this test's 20 s; grpc-js's own deadline would be 31 s.
    await expect(client.get(`${etcd.prefix}frozen`).string()).rejects.toBeInstanceOf(GRPCDeadlineExceededError);
  } finally {
    await etcd.resume();
    client.close();
  }
}, 20_000);
