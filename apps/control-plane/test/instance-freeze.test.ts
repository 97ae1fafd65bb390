// A hung instance: one of b's two instances is frozen (SIGSTOP) while
// grpc-js-xds clients call b at ≥ 20 calls/s. It stays registered — its lease is
// heartbeated by the agent, a separate process whose TCP probe a frozen process
// still passes — so only the clients can notice. Their keepalive drops the hung
// connection, the calls on it end UNAVAILABLE before any response and the
// route's default retry sends them to the other instance: no call fails. After
// SIGCONT the instance gets calls again.
import { ManagedProcess, waitUntil } from '@trellis/testing';
import { startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';
import { bundle, streakOf, XdsClientProcess } from './support/xds-client-process';

jest.setTimeout(180_000);

const CLIENTS = 2;
const LEASE_TTL_SECONDS = 60;
const FREEZE_MS = 12_000;

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

  it('moves calls to the other instance with none failed, and back after SIGCONT', async () => {
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

    const frozenAt = Date.now();
    await instances[0]!.freeze();
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
    // Calls answered while b-1 was frozen: by b-2 only (a frozen process answers nothing).
    const frozenWindow = clients.flatMap((c) => c.results.filter((r) => r.ok && r.t > frozenAt + 500 && r.t < thawedAt));
    const seconds = (thawedAt - frozenAt) / 1000;
    console.log(
      `instance frozen ${thawedAt - frozenAt} ms: ${frozenWindow.length} calls answered while frozen (${(frozenWindow.length / seconds).toFixed(0)}/s), ` +
        `${failed.length} failed of ${during.length}; b-1 served again ${Math.max(...backAt) - thawedAt} ms after SIGCONT`,
    );
    expect(failed).toEqual([]);
    expect(frozenWindow.length / seconds).toBeGreaterThanOrEqual(20);
    expect(new Set(frozenWindow.map((r) => r.instance))).toEqual(new Set(['b-2']));
    expect(h.emitted.problems).toEqual([]);
  });
});
