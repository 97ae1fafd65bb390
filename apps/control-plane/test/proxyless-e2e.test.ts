// End to end: real etcd, the real control plane, and @grpc/grpc-js-xds as the
// client (in a child process with its own node identity). Each step measures the
// time from the registry write to the client's changed behaviour.
import { status } from '@grpc/grpc-js';
import { eventually, startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';
import { startWhoServer } from './support/who-service';
import { streakOf, XdsClientProcess, type CallResult } from './support/xds-client-process';

jest.setTimeout(120_000);

/** The reason the control plane gives a proxyless client of `a` for a target it did not declare. */
const UNDECLARED = (target: string) => `a has not declared a dependency on ${target}; declare it in the registry`;

describe('proxyless gRPC client (grpc-js-xds) against the control plane', () => {
  let h: ControlPlaneHarness;
  const servers: { stop(): Promise<void> }[] = [];
  let client: XdsClientProcess | undefined;
  const timings: [string, number][] = [];

  const instance = async (id: string, version: string) => {
    const server = await startWhoServer(id);
    servers.push(server);
    return { id, port: server.port, version };
  };
  const register = (i: { id: string; port: number; version: string }) =>
    h.store.registerInstance(
      {
        service: 'b',
        id: i.id,
        address: '127.0.0.1',
        port: i.port,
        platform: 'vm',
        labels: { version: i.version },
        locality: { region: 'local', zone: 'z1', subZone: '' },
      },
      30,
    );

  beforeAll(async () => {
    h = await startControlPlaneHarness();
  });
  afterAll(async () => {
    await client?.stop();
    await Promise.all(servers.map((s) => s.stop()));
    await h?.stop();
    if (timings.length > 0) {
      // The measured convergence, one line per step (kept in the test output on purpose).
      console.log(
        `registry write → grpc-js-xds client behaviour:\n${timings.map(([step, ms]) => `  ${step.padEnd(44)} ${ms} ms`).join('\n')}`,
      );
    }
  });

  it('follows registry changes: instances, weights and the dependency itself', async () => {
    const b1 = await instance('b-1', 'v1');
    const b2 = await instance('b-2', 'v1');
    await h.store.createService({ name: 'b', team: 'core', protocol: 'grpc', port: 50051 }, 'test');
    await h.store.createService({ name: 'a', team: 'core', protocol: 'grpc', port: 50052, dependencies: [{ service: 'b' }] }, 'test');
    await register(b1);
    await register(b2);

    let t0 = Date.now();
    client = await XdsClientProcess.start({ xdsAddress: h.xdsAddress, service: 'a', nodeId: 'a-proxyless-1', target: 'b' });
    const seesBoth = (results: CallResult[]) => {
      const seen = new Set(results.map((r) => r.instance));
      return seen.has('b-1') && seen.has('b-2') ? results.find((r) => r.instance) : undefined;
    };
    const firstOk = await client.waitFor('calls reaching b-1 and b-2', t0, seesBoth);
    timings.push(['client start → first call reaching b', firstOk - t0]);

    // A new instance receives traffic.
    const b3 = await instance('b-3', 'v2');
    t0 = Date.now();
    await register(b3);
    timings.push([
      'register b-3 → first call to b-3',
      (await client.waitFor('a call to b-3', t0, (rs) => rs.find((r) => r.instance === 'b-3'))) - t0,
    ]);

    // A deregistered instance stops receiving traffic.
    t0 = Date.now();
    await h.store.deregisterInstance('b', 'b-1');
    const lastB1 = await client.waitFor(
      '40 calls without b-1',
      t0,
      streakOf(40, (r) => r.ok && r.instance !== 'b-1'),
    );
    timings.push(['deregister b-1 → calls stop reaching it', lastB1 - t0]);

    // A traffic split moves all traffic to the v2 subset, then back.
    const spec = (await h.store.getService('b'))!.value.spec;
    const splitV1V2 = (v1: number, v2: number) =>
      h.store.updateService(
        {
          ...spec,
          trafficSplit: [
            { name: 'v1', labels: { version: 'v1' }, weight: v1 },
            { name: 'v2', labels: { version: 'v2' }, weight: v2 },
          ],
        },
        'test',
      );
    t0 = Date.now();
    await splitV1V2(0, 100);
    timings.push([
      'split v1 0 / v2 100 → only b-3',
      (await client.waitFor(
        '20 calls only to b-3',
        t0,
        streakOf(20, (r) => r.instance === 'b-3'),
      )) - t0,
    ]);
    t0 = Date.now();
    await splitV1V2(100, 0);
    timings.push([
      'split v1 100 / v2 0 → only b-2',
      (await client.waitFor(
        '20 calls only to b-2',
        t0,
        streakOf(20, (r) => r.instance === 'b-2'),
      )) - t0,
    ]);

    // Without the dependency, A's client can no longer resolve B.
    const a = (await h.store.getService('a'))!.value.spec;
    t0 = Date.now();
    await h.store.updateService({ ...a, dependencies: [] }, 'test');
    const failing = await client.waitFor(
      'calls to fail',
      t0,
      streakOf(5, (r) => !r.ok),
    );
    timings.push(['remove dependency → calls fail', failing - t0]);
    const failure = client.results.find((r) => r.t >= failing)!;
    // The failure names its cause, as a sidecar's 404 does.
    expect(failure).toMatchObject({ ok: false, code: status.UNAVAILABLE, details: expect.stringContaining(UNDECLARED('b')) });

    // Declared again: the same client resolves B again (grpc-js-xds keeps a removed listener cached).
    t0 = Date.now();
    await h.store.updateService({ ...a, dependencies: [{ service: 'b' }] }, 'test');
    timings.push([
      'declare again → calls reach b',
      (await client.waitFor(
        'calls to reach b again',
        t0,
        streakOf(5, (r) => r.ok),
      )) - t0,
    ]);

    // A target the service never declared does not resolve: calls fail, none reaches anything, and the
    // very first call already says why. Its deadline (30 s) outlasts grpc-js-xds's 15 s wait for a missing
    // listener, so without that answer the first failure would be the anonymous "Listener c does not exist".
    t0 = Date.now();
    const undeclared = await XdsClientProcess.start({
      xdsAddress: h.xdsAddress,
      service: 'a',
      nodeId: 'a-proxyless-2',
      target: 'c',
      deadlineMs: 30_000,
    });
    try {
      const failed = await undeclared.waitFor(
        'calls to an undeclared service to fail',
        t0,
        streakOf(3, (r) => !r.ok),
      );
      timings.push(['undeclared target → calls fail', failed - t0]);
      expect(undeclared.results.filter((r) => r.ok)).toEqual([]);
      expect(undeclared.results[0]).toMatchObject({
        ok: false,
        code: status.UNAVAILABLE,
        details: expect.stringContaining(UNDECLARED('c')),
      });
    } finally {
      await undeclared.stop();
    }

    // A declared TCP dependency cannot be called over gRPC: its calls fail saying so, naming it (once the
    // control plane has seen the declaration; until then the client is told it is undeclared).
    await h.store.createService({ name: 'db', team: 'core', protocol: 'tcp', port: 5432 }, 'test');
    await h.store.updateService({ ...a, dependencies: [{ service: 'b' }, { service: 'db' }] }, 'test');
    t0 = Date.now();
    const tcp = await XdsClientProcess.start({ xdsAddress: h.xdsAddress, service: 'a', nodeId: 'a-proxyless-3', target: 'db' });
    try {
      await tcp.waitFor('a call to the TCP dependency failing with the reason', t0, (rs) =>
        rs.find(
          (r) =>
            r.code === status.UNAVAILABLE && r.details?.includes('db, a dependency of a, is a tcp service: gRPC calls cannot reach it'),
        ),
      );
      expect(tcp.results.filter((r) => r.ok)).toEqual([]);
    } finally {
      await tcp.stop();
    }

    // The proxy's status reached etcd for the registry to show.
    const statuses = await eventually('proxy status in etcd', async () => {
      const list = await h.store.listProxyStatuses('a');
      return list.length > 0 && list[0]!.types.lds?.lastAckedVersion ? list : undefined;
    });
    expect(statuses[0]).toMatchObject({ service: 'a', nodeId: 'a-proxyless-1', controlPlane: 'cp-test' });
  });

  it('sent only resources that decode with the generated types and satisfy validate.rules', () => {
    expect(h.emitted.checked).toBeGreaterThan(5);
    expect(h.emitted.problems).toEqual([]);
  });
});
