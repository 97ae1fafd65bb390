// A hung instance: one of b's two instances is frozen (SIGSTOP) while
// grpc-js-xds clients call b at ≥ 20 calls/s. It stays registered — its lease is
// heartbeated by the agent, a separate process whose TCP probe a frozen process
// still passes — so only the clients can notice. Their keepalive drops the hung
// connection, the calls on it end UNAVAILABLE before any response and the
// route's default retry sends them to the other instance: no call fails. After
// SIGCONT the instance gets calls again.
//
// The one call that may fail: one whose response the instance had already begun
// when it froze. A grpc-js server writes a unary response's headers and message
// together and its trailers in a second write ~1-4 ms later (strace); a freeze in
// between leaves the client with a started response and no status, and gRPC never
// retries a call once response headers arrived (gRFC A6: the call is committed,
// the server has handled it). Keepalive then ends it UNAVAILABLE "Connection
// dropped". CI saw this once in ~10 runs (1 call of 881).
import { status } from '@grpc/grpc-js';
import { ManagedProcess, waitUntil } from '@trellis/testing';
import { startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';
import { bundle, streakOf, XdsClientProcess, type CallResult } from './support/xds-client-process';

jest.setTimeout(180_000);

const CLIENTS = 2;
const LEASE_TTL_SECONDS = 60;
const FREEZE_MS = 12_000;
const STEADY_MS = 3_000;

async function startWhoProcess(instanceId: string): Promise<{ process: ManagedProcess; port: number }> {
  const script = await bundle('who-server-process');
  const proc = new ManagedProcess(instanceId, process.execPath, [script, instanceId]);
  proc.start();
  await waitUntil(`${instanceId} serving`, async () => /"serving"/.test(proc.recentOutput()), proc);
  const port = Number(/"serving":(\d+)/.exec(proc.recentOutput())![1]);
  return { process: proc, port };
}

describe('an instance frozen under proxyless traffic', () => {
  let h: ControlPlaneHarness;
  const instances: ManagedProcess[] = [];
  const clients: XdsClientProcess[] = [];
  let heartbeating = true;

  beforeAll(async () => {
    h = await startControlPlaneHarness();
  });
  afterAll(async () => {
    heartbeating = false;
    await Promise.all(clients.map((c) => c.stop()));
    for (const i of instances) i.signal('SIGCONT');
    await Promise.all(instances.map((i) => i.stop()));
    await h?.stop();
  });

  it('moves calls to the other instance with none failed but one the freeze cut off mid-response, and back after SIGCONT', async () => {
    // The policy's outlier detection reaches the clients too (as failure-percentage ejection).
    await h.store.createService(
      {
        name: 'b',
        team: 'core',
        protocol: 'grpc',
        port: 50051,
        policy: { outlierDetection: { consecutive5xx: 2, intervalMs: 1_000, baseEjectionTimeMs: 2_000, maxEjectionPercent: 50 } },
      },
      'test',
    );
    await h.store.createService({ name: 'a', team: 'core', protocol: 'grpc', port: 50052, dependencies: [{ service: 'b' }] }, 'test');
    for (const id of ['b-1', 'b-2']) {
      const { process: proc, port } = await startWhoProcess(id);
      instances.push(proc);
      await h.store.registerInstance(
        { service: 'b', id, address: '127.0.0.1', port, platform: 'vm', locality: { region: 'local', zone: 'z1', subZone: '' } },
        LEASE_TTL_SECONDS,
      );
    }
    // The agent's heartbeats: the lease never lapses, the instance stays in every endpoint list.
    const heartbeats = (async () => {
      while (heartbeating) {
        await Promise.all(['b-1', 'b-2'].map((id) => h.store.heartbeatInstance('b', id).catch(() => false)));
        await new Promise((r) => setTimeout(r, 2_000));
      }
    })();
    for (let i = 0; i < CLIENTS; i++)
      clients.push(await XdsClientProcess.start({ xdsAddress: h.xdsAddress, service: 'a', nodeId: `a-${i}`, target: 'b' }));
    const t0 = Date.now();
    for (const c of clients) {
      await c.waitFor('calls reaching b-1', t0, (rs) => rs.find((r) => r.instance === 'b-1'), 60_000);
      await c.waitFor('calls reaching b-2', t0, (rs) => rs.find((r) => r.instance === 'b-2'), 60_000);
    }

    // The rate both instances answer at on this machine now: the freeze's rate is judged against it, not
    // against a fixed number a loaded machine cannot reach.
    const steadyFrom = Date.now();
    await new Promise((r) => setTimeout(r, STEADY_MS));
    const frozenAt = Date.now();
    const steadyRate =
      clients.flatMap((c) => c.results.filter((r) => r.ok && r.t >= steadyFrom && r.t < frozenAt)).length /
      ((frozenAt - steadyFrom) / 1000);
    await instances[0]!.freeze();
    const stoppedBy = Date.now();
    await new Promise((r) => setTimeout(r, FREEZE_MS));
    // Still registered throughout: only the clients moved the traffic.
    expect((await h.store.listInstances('b')).map((i) => i.id).sort()).toEqual(['b-1', 'b-2']);
    instances[0]!.signal('SIGCONT');
    const thawedAt = Date.now();

    const backAt: number[] = [];
    for (const c of clients)
      backAt.push(await c.waitFor('calls reaching b-1 again', thawedAt, (rs) => rs.find((r) => r.instance === 'b-1'), 60_000));
    const settled = Date.now();
    for (const c of clients)
      await c.waitFor(
        'calls flowing after the thaw',
        settled,
        streakOf(20, (r) => r.ok),
        30_000,
      );
    heartbeating = false;
    await heartbeats;

    const during = clients.flatMap((c) => c.results.filter((r) => r.t >= frozenAt));
    const failed = during.filter((r) => !r.ok);
    // Cut off mid-response by the freeze (see the top): begun before b-1 stopped, its response begun by
    // b-1, ended UNAVAILABLE. Each client has one call in flight, so at most one such call per client.
    const cutOffMidResponse = (r: CallResult) => r.code === status.UNAVAILABLE && r.responseStartedBy === 'b-1' && r.start <= stoppedBy;
    // Calls answered while b-1 was frozen: by b-2 only (a frozen process answers nothing).
    const frozenWindow = clients.flatMap((c) => c.results.filter((r) => r.ok && r.t > frozenAt + 500 && r.t < thawedAt));
    const seconds = (thawedAt - frozenAt) / 1000;
    console.log(
      `instance frozen ${thawedAt - frozenAt} ms: ${frozenWindow.length} calls answered while frozen (${(frozenWindow.length / seconds).toFixed(0)}/s, ` +
        `${steadyRate.toFixed(0)}/s before), ` +
        `${failed.length} failed of ${during.length} (${failed.filter(cutOffMidResponse).length} cut off mid-response by the freeze); ` +
        `b-1 served again ${Math.max(...backAt) - thawedAt} ms after SIGCONT`,
    );
    expect(failed.filter((r) => !cutOffMidResponse(r))).toEqual([]);
    for (const c of clients) expect(c.results.filter((r) => r.t >= frozenAt && !r.ok).length).toBeLessThanOrEqual(1);
    // Calls keep flowing at the pace of the calls before (a call hung to its 10 s deadline would stall its client).
    expect(frozenWindow.length / seconds).toBeGreaterThanOrEqual(steadyRate / 2);
    expect(new Set(frozenWindow.map((r) => r.instance))).toEqual(new Set(['b-2']));
    expect(h.emitted.problems).toEqual([]);
  });
});
