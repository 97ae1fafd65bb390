// Two control-plane replicas over one etcd, grpc-js-xds clients whose bootstrap
// names both (`ipv4:cp1,cp2`, from proxylessBootstrap). The replica they stream
// from is killed (SIGKILL, a crash): they keep calling on the config they hold,
// reconnect to the other replica at once and converge on the next change. Then
// the killed one is restarted and the other closed: they move back. No call
// fails, and the replica they fail over to never sends an empty or partial config.
import { TypeUrl, unpackAny } from '@trellis/envoy-types';
import type { ClusterLoadAssignment } from '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import { freePort, ManagedProcess, waitUntil } from '@trellis/testing';
import type { SentResponse, StreamInfo } from '../src/xds/callbacks';
import { eventually, startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';
import { startWhoServer } from './support/who-service';
import { bundle, streakOf, XdsClientProcess } from './support/xds-client-process';

jest.setTimeout(240_000);

const CLIENTS = 2;

interface Sent {
  node: string;
  typeUrl: string;
  names: string[];
  endpoints?: number;
}

async function startControlPlaneProcess(
  etcdEndpoints: string[],
  prefix: string,
  xdsPort: number,
  httpPort: number,
): Promise<ManagedProcess> {
  const script = await bundle('control-plane-process');
  const env = {
    TRELLIS_ETCD_ENDPOINTS: etcdEndpoints.join(','),
    TRELLIS_ETCD_PREFIX: prefix,
    TRELLIS_HOST: '127.0.0.1',
    TRELLIS_XDS_PORT: String(xdsPort),
    TRELLIS_HTTP_PORT: String(httpPort),
    TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: 'true',
    TRELLIS_CONTROL_PLANE_ID: 'cp-process',
    TRELLIS_LOG_LEVEL: 'warn',
  };
  // ManagedProcess passes no environment of its own: go through env(1).
  const proc = new ManagedProcess('control-plane', '/usr/bin/env', [
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
    process.execPath,
    script,
  ]);
  proc.start();
  await waitUntil('control plane /readyz', async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).ok, proc);
  return proc;
}

describe('two control-plane replicas, the one clients stream from killed', () => {
  let h: ControlPlaneHarness;
  let cpProcess: ManagedProcess;
  const servers: { stop(): Promise<void> }[] = [];
  const clients: XdsClientProcess[] = [];
  /** Everything the in-process replica sent to the clients. */
  const sent: Sent[] = [];
  const streamsOpened: string[] = [];

  const tap = {
    onStreamOpen: (stream: StreamInfo) => void streamsOpened.push(stream.nodeId),
    onResponse: (stream: StreamInfo, r: SentResponse) => {
      const node = stream.nodeId;
      if (!node.startsWith('a-')) return;
      const entry: Sent = { node, typeUrl: r.typeUrl, names: r.sent.map((s) => s.name) };
      if (r.typeUrl === TypeUrl.ClusterLoadAssignment)
        entry.endpoints = Math.min(
          ...r.sent.map((s) =>
            (unpackAny(s.any).message as unknown as ClusterLoadAssignment).endpoints.reduce((n, l) => n + l.lbEndpoints.length, 0),
          ),
        );
      sent.push(entry);
    },
  };

  beforeAll(async () => {
    h = await startControlPlaneHarness({ TRELLIS_CONTROL_PLANE_ID: 'cp-in-process' }, tap);
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(servers.map((s) => s.stop()));
    await cpProcess?.stop();
    await h?.stop();
  });

  it('clients keep calling, fail over at once, converge, and never get an empty or partial config', async () => {
    await h.store.createService({ name: 'b', team: 'core', protocol: 'grpc', port: 50051 }, 'test');
    await h.store.createService({ name: 'a', team: 'core', protocol: 'grpc', port: 50052, dependencies: [{ service: 'b' }] }, 'test');
    const register = async (id: string) => {
      const server = await startWhoServer(id);
      servers.push(server);
      await h.store.registerInstance(
        {
          service: 'b',
          id,
          address: '127.0.0.1',
          port: server.port,
          platform: 'vm',
          locality: { region: 'local', zone: 'z1', subZone: '' },
        },
        300,
      );
    };
    await register('b-1');
    await register('b-2');

    const [xdsPort, httpPort] = [await freePort(), await freePort()];
    cpProcess = await startControlPlaneProcess(h.etcd.endpoints, h.etcd.prefix, xdsPort, httpPort);
    // The process replica first: pick_first streams from it while it lives.
    const replicas = [`127.0.0.1:${xdsPort}`, h.xdsAddress];
    for (let i = 0; i < CLIENTS; i++)
      clients.push(await XdsClientProcess.start({ xdsAddress: replicas.join(','), service: 'a', nodeId: `a-${i}`, target: 'b' }));
    const t0 = Date.now();
    for (const c of clients)
      await c.waitFor(
        'calls reaching b',
        t0,
        streakOf(20, (r) => r.ok),
        60_000,
      );
    expect(streamsOpened.filter((n) => n.startsWith('a-'))).toEqual([]);

    // 1. Kill the replica they stream from.
    const killedAt = Date.now();
    cpProcess.signal('SIGKILL');
    await eventually(
      'both clients streaming from the other replica',
      () => CLIENTS === new Set(streamsOpened.filter((n) => n.startsWith('a-'))).size || undefined,
      60_000,
    );
    const failedOverMs = Date.now() - killedAt;
    // 2. A change after the failover reaches them.
    await register('b-3');
    const changedAt = Date.now();
    for (const c of clients)
      await c.waitFor('calls reaching b-3 (converged)', changedAt, (rs) => rs.find((r) => r.instance === 'b-3'), 60_000);
    const convergedMs = Date.now() - changedAt;

    // 3. The killed replica restarted, the other one closed: back to the first.
    await cpProcess.stop();
    cpProcess = await startControlPlaneProcess(h.etcd.endpoints, h.etcd.prefix, xdsPort, httpPort);
    const movedBackAt = Date.now();
    await h.cp.close();
    await register('b-4');
    for (const c of clients)
      await c.waitFor(
        'calls reaching b-4 through the restarted replica',
        movedBackAt,
        (rs) => rs.find((r) => r.instance === 'b-4'),
        60_000,
      );
    const backMs = Date.now() - movedBackAt;
    for (const c of clients)
      await c.waitFor(
        'calls flowing at the end',
        Date.now(),
        streakOf(20, (r) => r.ok),
        30_000,
      );

    const during = clients.flatMap((c) => c.results.filter((r) => r.t >= killedAt));
    const failed = during.filter((r) => !r.ok);
    console.log(
      `control-plane replica killed: clients on the other replica after ${failedOverMs} ms, a change converged ${convergedMs} ms later; ` +
        `back on the restarted replica with a change converged after ${backMs} ms; ${failed.length} failed of ${during.length} calls; ` +
        `responses from the surviving replica: ${JSON.stringify(sent.map((s) => `${s.node} ${s.typeUrl.split('.').pop()} ×${s.names.length}`))}`,
    );
    expect(failed).toEqual([]);
    // What the surviving replica sent the clients that failed over: never empty, never without b. (On
    // reconnecting they present the versions they hold — content digests, the same on every replica —
    // so it sends nothing until a change.)
    expect(sent.length).toBeGreaterThan(0);
    expect(sent.filter((s) => s.names.length === 0)).toEqual([]);
    expect(sent.filter((s) => s.typeUrl === TypeUrl.Listener && !s.names.includes('b'))).toEqual([]);
    expect(sent.filter((s) => s.typeUrl === TypeUrl.ClusterLoadAssignment && (s.endpoints ?? 0) < 2)).toEqual([]);
    expect(h.emitted.problems).toEqual([]);
  });
});
