// A busy process keeps its etcd watch. grpc-js times a keepalive ping with a timer, and Node
// runs due timers before it reads sockets: when the event loop is busy from just after a ping
// until past the ping's timeout, the connection is dropped though etcd answered at once
// ("14 UNAVAILABLE: Connection dropped", as a control plane at load ~15 lost its watch 8 times
// during a first push); the lease keep-alive's and the readiness probe's (etcd-probe.test.ts)
// deadlines were timers too. Here this process is kept busy in synchronous turns against a real etcd.
import { busyTurns, eventually, startEtcd, startTcpProxy, type TcpProxy, type TestEtcd } from '@trellis/testing';
import { connectEtcd, type EtcdClient, type EtcdConnectionOptions } from '../src/etcd-client';
import { KeyLayout } from '../src/keys';
import { MeshStore } from '../src/store';
import { LeaseKeepAliveStream } from '../src/store/lease-keep-alive';
import { MeshWatcher } from '../src/watcher';
import { aService, anInstance } from './fixtures';

jest.setTimeout(180_000);

/** Each synchronous turn; a ping's answer is read only turns after it was sent (see `proxy`). */
const TURN_MS = 5_000;
/** The timeout that dropped the watch before ETCD_KEEPALIVE's: a ping in a stretch of busy turns outlasts it. */
const SHORT_TIMEOUT_MS = 10_000;

let etcd: TestEtcd;
/**
 * The watch's way to etcd, in this process: a ping and its answer each wait for this process to
 * read and forward them, as over a network they take longer than the moment between sending
 * the ping and the turn that follows. Without it, on loopback the answer sometimes arrives in time.
 */
let proxy: TcpProxy;
let layout: KeyLayout;
let store: MeshStore;
const clients: EtcdClient[] = [];
const watchers: MeshWatcher[] = [];

beforeAll(async () => {
  // Pings every second: etcd sends GOAWAY "too_many_pings" to pings closer than --grpc-keepalive-min-time (5 s by default).
  etcd = await startEtcd({ extraArgs: ['--grpc-keepalive-min-time=1s'] });
  const target = new URL(etcd.endpoints[0]!);
  proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) });
  layout = new KeyLayout(etcd.prefix);
  store = new MeshStore(etcd.client(), layout);
});
afterEach(async () => {
  await Promise.all(watchers.splice(0).map((w) => w.close()));
  for (const c of clients.splice(0)) c.close();
});
afterAll(async () => {
  await proxy?.close();
  await etcd?.close();
});

/** A mesh watch through the proxy with this keepalive, pinging every second; records its disconnects. */
async function watchThroughProxy(keepalive: EtcdConnectionOptions['keepalive']) {
  const client = connectEtcd({ endpoints: [`http://${proxy.host}:${proxy.port}`], keepalive });
  clients.push(client);
  const disconnects: string[] = [];
  const watcher = MeshWatcher.start(client, layout, { onDisconnect: (code) => disconnects.push(code) });
  watchers.push(watcher);
  const resets: boolean[] = [];
  watcher.on('update', (u) => resets.push(u.reset));
  await watcher.whenReady();
  await eventually('watch connected', () => watcher.live);
  return { watcher, disconnects, resets };
}

it('with a keepalive timeout shorter than a busy stretch, the watch is dropped though etcd answered (the fault)', async () => {
  const { watcher, disconnects, resets } = await watchThroughProxy({ timeMs: 1_000, timeoutMs: SHORT_TIMEOUT_MS });
  await busyTurns(8, TURN_MS, () => disconnects.length > 0);
  expect(disconnects).toEqual(['unavailable']);

  // It recovers as before: the watch resumes from its revision (no second snapshot).
  await store.createService(aService('after-the-drop'), 'test');
  await eventually('change after the drop', () => watcher.state.services.has('after-the-drop'), 60_000);
  expect(watcher.live).toBe(true);
  expect(resets).toEqual([true, false]);
});

it('with the production keepalive, the same busy stretch keeps the watch', async () => {
  const { watcher, disconnects, resets } = await watchThroughProxy({ timeMs: 1_000 });
  const statuses: boolean[] = [];
  watcher.on('status', ({ live }) => statuses.push(live));
  expect(await busyTurns(5, TURN_MS)).toBe(5);

  await store.createService(aService('after-the-busy-stretch'), 'test');
  await eventually('change after the busy stretch', () => watcher.state.services.has('after-the-busy-stretch'), 60_000);
  expect(disconnects).toEqual([]);
  expect(statuses).toEqual([]);
  expect(resets).toEqual([true, false]);
});

it('a lease refresh answered during a busy stretch is not taken for a stuck stream', async () => {
  const client = connectEtcd({ endpoints: etcd.endpoints });
  clients.push(client);
  const lease = await client.leaseClient.leaseGrant({ TTL: 60 });
  // A deadline shorter than each turn: the answer arrives during a turn and is read after it.
  const keepAlive = new LeaseKeepAliveStream(client, { timeoutMs: 3_000 });
  try {
    expect(await keepAlive.refresh(lease.ID)).toBe(true); // the stream is open
    const refreshed = keepAlive.refresh(lease.ID);
    await busyTurns(2, 5_000);
    expect(await refreshed).toBe(true);
  } finally {
    keepAlive.close();
    await client.leaseClient.leaseRevoke({ ID: lease.ID });
  }
});

it('a heartbeat answered during busy turns longer than its keep-alive timeout reports the instance alive', async () => {
  // Through the proxy: the answer is forwarded between two turns and read after the next, as over a network.
  const client = connectEtcd({ endpoints: [`http://${proxy.host}:${proxy.port}`] });
  clients.push(client);
  const proxied = new MeshStore(client, layout);
  await proxied.registerInstance(anInstance('busy-heartbeat', 'i-1'), 60);
  expect(await proxied.heartbeatInstance('busy-heartbeat', 'i-1')).toBe(true); // the connection is up
  // Each turn outlasts the keep-alive's 5 s timeout. A heartbeat timed by a plain deadline timer failed each attempt
  // here before reading etcd's answer, and the registry answered 503 to a live instance.
  let settled = false;
  const alive = proxied.heartbeatInstance('busy-heartbeat', 'i-1').finally(() => (settled = true));
  await busyTurns(8, 6_000, () => settled);
  await expect(alive).resolves.toBe(true);
});

it('a create-only txn answered during a busy turn longer than the call timeout is not retried into its own conflict', async () => {
  const client = connectEtcd({ endpoints: etcd.endpoints, callTimeoutMs: 2_000 });
  clients.push(client);
  const key = `${etcd.prefix}created-while-busy`;
  await client.get(key); // the connection is up
  // Sent now; etcd applies it and answers during the turn. A retry after a false timeout would find the key.
  const created = client.if(key, 'Create', '==', 0).then(client.put(key).value('v')).commit();
  await busyTurns(1, 5_000);
  expect((await created).succeeded).toBe(true);
});
