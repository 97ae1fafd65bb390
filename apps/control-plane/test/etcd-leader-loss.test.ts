// Leader loss on a local 3-member etcd cluster. The control plane and the
// registry's store are given all three endpoints (as TRELLIS_ETCD_ENDPOINTS
// would give them); the leader is killed (SIGKILL). Writes continue once the two
// survivors elect a leader, the control plane's watch resumes (a change made after
// the loss reaches its configuration), no acknowledged write is lost, and the
// time without a writable etcd is measured (printed, not asserted).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectEtcd } from '@trellis/mesh-schema';
import { findBinary, freePort, ManagedProcess, waitUntil, type TestEtcd } from '@trellis/testing';
import { eventually, startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';

jest.setTimeout(180_000);

interface Member {
  name: string;
  clientUrl: string;
  process: ManagedProcess;
}

async function startCluster(dataDir: string): Promise<Member[]> {
  const binary = findBinary('etcd');
  if (!binary) throw new Error('etcd not found: run `node tools/setup/ensure-system-deps.mjs`');
  const ports = [];
  for (let i = 0; i < 3; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const initialCluster = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(',');
  const members = ports.map((p, i) => {
    const clientUrl = `http://127.0.0.1:${p.client}`;
    const proc = new ManagedProcess(`etcd-m${i}`, binary, [
      ...['--name', `m${i}`, '--data-dir', join(dataDir, `m${i}`)],
      ...['--listen-client-urls', clientUrl, '--advertise-client-urls', clientUrl],
      ...['--listen-peer-urls', `http://127.0.0.1:${p.peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${p.peer}`],
      ...['--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', 'trellis-leader-loss'],
      ...['--heartbeat-interval', '100', '--election-timeout', '1000', '--log-level', 'warn'],
    ]);
    proc.start();
    return { name: `m${i}`, clientUrl, process: proc };
  });
  for (const m of members) await waitUntil(`${m.name} healthy`, async () => (await fetch(`${m.clientUrl}/health`)).ok, m.process);
  return members;
}

/** The member the others follow, asked of one member directly. */
async function leaderOf(members: Member[]): Promise<Member> {
  for (const m of members) {
    const client = connectEtcd({ endpoints: [m.clientUrl], callTimeoutMs: 2_000 });
    try {
      const status = await client.maintenance.status();
      if (status.leader === status.header.member_id) return m;
    } catch {
      // not answering: not the leader
    } finally {
      client.close();
    }
  }
  throw new Error('no member says it is the leader');
}

describe('etcd leader loss on a 3-member cluster', () => {
  let dataDir: string;
  let members: Member[];
  let h: ControlPlaneHarness;
  const clients: ReturnType<typeof connectEtcd>[] = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'trellis-etcd3-'));
    members = await startCluster(dataDir);
    const endpoints = members.map((m) => m.clientUrl);
    // The harness takes a TestEtcd; this cluster is one, minus the single-server controls it does not use here.
    const cluster = {
      endpoints,
      prefix: '/trellis-leader-loss/',
      canRestart: false,
      client: () => {
        const client = connectEtcd({ endpoints });
        clients.push(client);
        return client;
      },
    } as unknown as TestEtcd;
    h = await startControlPlaneHarness({}, undefined, cluster);
  });
  afterAll(async () => {
    await h?.stop();
    for (const c of clients) c.close();
    await Promise.all((members ?? []).map((m) => m.process.stop()));
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('writes continue, watches resume, no acknowledged write is lost', async () => {
    const acknowledged: string[] = [];
    for (let i = 0; i < 10; i++) {
      await h.store.createService({ name: `before-${i}`, team: 'core', protocol: 'grpc', port: 50051 }, 'test');
      acknowledged.push(`before-${i}`);
    }
    await eventually('the control plane holding every service', () => h.cp.cache.ready && (h.cp.watcher.live || undefined));

    const leader = await leaderOf(members);
    const killedAt = Date.now();
    leader.process.signal('SIGKILL');
    // Keep writing through the election: the first acknowledged write after the kill is the recovery.
    let firstWriteMs: number | undefined;
    let failedWrites = 0;
    for (let i = 0; acknowledged.length < 30; i++) {
      try {
        await h.store.createService({ name: `after-${i}`, team: 'core', protocol: 'grpc', port: 50051 }, 'test');
        acknowledged.push(`after-${i}`);
        firstWriteMs ??= Date.now() - killedAt;
      } catch {
        failedWrites++;
        await new Promise((r) => setTimeout(r, 100));
      }
      if (Date.now() - killedAt > 60_000) throw new Error(`no write accepted within 60 s of the leader loss (${failedWrites} refused)`);
    }
    const newLeader = await leaderOf(members.filter((m) => m !== leader));
    // The watch resumed: a change after the loss reaches what proxies get.
    await h.store.createService(
      { name: 'caller', team: 'core', protocol: 'grpc', port: 50052, dependencies: [{ service: 'after-0' }] },
      'test',
    );
    acknowledged.push('caller');
    const changedAt = Date.now();
    await eventually(
      'the change after the leader loss served',
      async () => {
        const res = await fetch(`${h.httpUrl}/debug/config_dump?service=caller&kind=proxyless`);
        return res.ok && JSON.stringify(await res.json()).includes('after-0') ? true : undefined;
      },
      60_000,
    );
    const watchMs = Date.now() - changedAt;
    const held = new Set((await h.store.listServices()).map((s) => s.value.spec.name));
    const lost = acknowledged.filter((name) => !held.has(name));
    console.log(
      `etcd leader ${leader.name} killed: new leader ${newLeader.name}, first write accepted after ${firstWriteMs} ms ` +
        `(${failedWrites} refused meanwhile), a change served ${watchMs} ms after it was written; ${acknowledged.length} acknowledged writes, ${lost.length} lost`,
    );
    expect(lost).toEqual([]);
    expect(h.emitted.problems).toEqual([]);
  });
});
