// Proxy status records in etcd: one per connected proxy, written within a
// per-flush budget, deleted on disconnect, all gone when the replica stops.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { TypeUrl } from '@trellis/envoy-types';
import { AdsTestClient, testNode } from './support/ads-client';
import { eventually, startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';

jest.setTimeout(120_000);

describe('proxy status in etcd', () => {
  let h: ControlPlaneHarness;
  const clients: AdsTestClient<'sotw'>[] = [];

  beforeAll(async () => {
    h = await startControlPlaneHarness({ TRELLIS_PROXY_STATUS_INTERVAL_MS: 300, TRELLIS_PROXY_STATUS_MAX_WRITES: 1 });
    await h.store.createService({ name: 'a', team: 'core', protocol: 'http', port: 8080 }, 'test');
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await h?.stop();
  });

  it('records a NACK with the mesh revision of the change that produced the rejected config', async () => {
    await h.store.createService({ name: 'api', team: 'core', protocol: 'http', port: 8080 }, 'test');
    await h.store.createService({ name: 'db', team: 'core', protocol: 'http', port: 5432 }, 'test');
    const web = await h.store.createService({ name: 'web', team: 'core', protocol: 'http', port: 8080 }, 'test');
    const c = AdsTestClient.open(h.xdsAddress, 'sotw');
    clients.push(c);
    c.send({ node: testNode('web', 'web-nack'), typeUrl: TypeUrl.Cluster });
    const first = await c.next();
    c.ack(TypeUrl.Cluster, first);

    const rejectedChange = await h.store.updateService({ ...web.value.spec, dependencies: [{ service: 'api' }] }, 'alice');
    const rejected = await c.next();
    c.nack(TypeUrl.Cluster, rejected, first.versionInfo, 'cluster api: bad');
    // A later accepted change moves the record's meshRevision on; the NACK keeps its own.
    const acceptedChange = await h.store.updateService({ ...web.value.spec, dependencies: [{ service: 'api' }, { service: 'db' }] }, 'bob');
    const accepted = await c.next();
    c.ack(TypeUrl.Cluster, accepted);

    const status = await eventually('the accepted push recorded after the NACK', async () => {
      const [s] = await h.store.listProxyStatuses('web');
      return s?.types.cds?.lastAckedVersion === accepted.versionInfo ? s : undefined;
    });
    const nack = status.types.cds?.lastNack;
    expect(nack).toEqual({
      version: rejected.versionInfo,
      error: 'cluster api: bad',
      at: expect.any(String),
      meshRevision: expect.any(String),
    });
    // The model's revision is the newest key it has seen under the prefix (status writes count too):
    // at or after the rejected change, before the accepted one.
    const revision = BigInt(nack!.meshRevision!);
    expect(revision).toBeGreaterThanOrEqual(BigInt(rejectedChange.modRevision));
    expect(revision).toBeLessThan(BigInt(acceptedChange.modRevision));
    expect(BigInt(status.meshRevision!)).toBeGreaterThanOrEqual(BigInt(acceptedChange.modRevision));
    // History entries commit with their change, so the newest one at or before it is the cause.
    const history = await h.store.listHistoryVersioned('web');
    const cause = history.filter((e) => BigInt(e.modRevision) <= revision).at(-1);
    expect(cause?.modRevision).toBe(rejectedChange.modRevision);
    expect(cause?.value).toMatchObject({ generation: 2, actor: 'alice', action: 'update' });

    c.close();
    clients.splice(clients.indexOf(c), 1);
    await eventually('the closed stream’s status deleted through the store', async () =>
      (await h.store.listProxyStatuses('web')).length === 0 ? true : undefined,
    );
  });

  it('a proxy reconnecting with the versions it holds is answered on its new stream, and that stream is recorded in sync', async () => {
    const first = AdsTestClient.open(h.xdsAddress, 'sotw');
    clients.push(first);
    first.send({ node: testNode('a', 'a-reconnect'), typeUrl: TypeUrl.Cluster });
    first.send({ typeUrl: TypeUrl.Listener });
    const held = new Map<string, string>();
    for (let i = 0; i < 2; i++) {
      const r = await first.next();
      held.set(r.typeUrl, r.versionInfo);
      first.ack(r.typeUrl, r);
    }
    first.close();
    clients.splice(clients.indexOf(first), 1);

    // Envoy's re-subscription: the versions held, no nonce. Before, nothing came back (same versions) and the
    // new stream's record said nothing was sent; Envoy, reset only by a response, kept growing its backoff.
    const again = AdsTestClient.open(h.xdsAddress, 'sotw');
    clients.push(again);
    again.send({ node: testNode('a', 'a-reconnect'), typeUrl: TypeUrl.Cluster, versionInfo: held.get(TypeUrl.Cluster) });
    again.send({ typeUrl: TypeUrl.Listener, versionInfo: held.get(TypeUrl.Listener) });
    for (let i = 0; i < 2; i++) {
      const r = await again.next();
      expect(r.versionInfo).toBe(held.get(r.typeUrl));
      again.ack(r.typeUrl, r);
    }
    const record = await eventually('the new stream recorded with both types acknowledged', async () => {
      const [s] = (await h.store.listProxyStatuses('a')).filter((s) => s.nodeId === 'a-reconnect');
      return s?.types.cds?.lastAckedVersion && s.types.lds?.lastAckedVersion ? s : undefined;
    });
    expect(record.types.cds).toMatchObject({ lastSentVersion: held.get(TypeUrl.Cluster), lastAckedVersion: held.get(TypeUrl.Cluster) });
    expect(record.types.lds).toMatchObject({ lastSentVersion: held.get(TypeUrl.Listener), lastAckedVersion: held.get(TypeUrl.Listener) });
    expect(await again.drain()).toEqual([]);
    again.close();
    clients.splice(clients.indexOf(again), 1);
    await eventually('the reconnected stream’s status deleted', async () =>
      (await h.store.listProxyStatuses('a')).some((s) => s.nodeId === 'a-reconnect') ? undefined : true,
    );
  });

  it('attack: a second stream claiming a streaming node id neither replaces nor deletes its record; its NACK text is bounded', async () => {
    await h.store.createService({ name: 'front', team: 'core', protocol: 'http', port: 8080 }, 'test');
    const real = AdsTestClient.open(h.xdsAddress, 'sotw');
    clients.push(real);
    real.send({ node: testNode('front', 'front-1'), typeUrl: TypeUrl.Cluster });
    real.ack(TypeUrl.Cluster, await real.next());
    const genuine = await eventually('the real front-1 recorded', async () => {
      const [s] = await h.store.listProxyStatuses('front');
      return s?.types.cds?.lastAckedVersion ? s : undefined;
    });

    const impostor = AdsTestClient.open(h.xdsAddress, 'sotw');
    impostor.send({ node: testNode('front', 'front-1'), typeUrl: TypeUrl.Cluster });
    const pushed = await impostor.next();
    const markup = `<script>alert(1)</script>\u0007${'x'.repeat(1_000_000)}`;
    impostor.nack(TypeUrl.Cluster, pushed, '', markup);
    const both = await eventually('the impostor kept apart, with its NACK', async () => {
      const all = await h.store.listProxyStatuses('front');
      return all.length === 2 && all.some((s) => s.types.cds?.lastNack) ? all : undefined;
    });
    // The genuine record is untouched; the impostor's is its own, and its text is cut.
    expect(both).toContainEqual(genuine);
    const stored = both.find((s) => s.stream !== genuine.stream)!;
    expect(stored.nodeId).toBe('front-1');
    expect(stored.types.cds!.lastNack!.error.length).toBeLessThanOrEqual(1024);
    expect(stored.types.cds!.lastNack!.error).not.toContain('\u0007');

    impostor.close();
    await eventually('only the impostor’s record removed', async () => {
      const all = await h.store.listProxyStatuses('front');
      return all.length === 1 && all[0]!.stream === genuine.stream ? true : undefined;
    });
    // The real proxy is still served and still recorded.
    await h.store.createService({ name: 'front-dep', team: 'core', protocol: 'http', port: 8080 }, 'test');
    await h.store.updateService(
      { name: 'front', team: 'core', protocol: 'http', port: 8080, dependencies: [{ service: 'front-dep' }] },
      'test',
    );
    const next = await real.next();
    real.ack(TypeUrl.Cluster, next);
    await eventually('the real front-1’s next ACK recorded', async () => {
      const [s] = await h.store.listProxyStatuses('front');
      return s?.stream === genuine.stream && s.types.cds?.lastAckedVersion === next.versionInfo ? true : undefined;
    });
    real.close();
    clients.splice(clients.indexOf(real), 1);
  });

  it('attack: the same takeover over Delta xDS: the impostor NACKs and leaves, the SotW stream of the real node keeps its record', async () => {
    await h.store.createService({ name: 'back', team: 'core', protocol: 'http', port: 8080 }, 'test');
    const real = AdsTestClient.open(h.xdsAddress, 'sotw');
    clients.push(real);
    real.send({ node: testNode('back', 'back-1'), typeUrl: TypeUrl.Cluster });
    real.ack(TypeUrl.Cluster, await real.next());
    const genuine = await eventually('the real back-1 recorded', async () => {
      const [s] = await h.store.listProxyStatuses('back');
      return s?.types.cds?.lastAckedVersion ? s : undefined;
    });

    const impostor = AdsTestClient.open(h.xdsAddress, 'delta');
    impostor.send({ node: testNode('back', 'back-1'), typeUrl: TypeUrl.Cluster, resourceNamesSubscribe: ['*'] });
    const pushed = await impostor.next();
    impostor.send({
      typeUrl: TypeUrl.Cluster,
      responseNonce: pushed.nonce,
      errorDetail: { code: 3, message: `<img src=x onerror=alert(1)>\r\n${'y'.repeat(100_000)}` },
    });
    const both = await eventually('the impostor kept apart, with its NACK', async () => {
      const all = await h.store.listProxyStatuses('back');
      return all.length === 2 && all.some((s) => s.types.cds?.lastNack) ? all : undefined;
    });
    expect(both).toContainEqual(genuine);
    const stored = both.find((s) => s.stream !== genuine.stream)!;
    expect(stored.types.cds!.lastNack!.error.length).toBeLessThanOrEqual(1024);
    expect(stored.types.cds!.lastNack!.error).not.toContain('\r');

    impostor.close();
    await eventually('only the impostor’s record removed', async () => {
      const all = await h.store.listProxyStatuses('back');
      return all.length === 1 && all[0]!.stream === genuine.stream ? true : undefined;
    });
    real.close();
    clients.splice(clients.indexOf(real), 1);
  });

  it('attack: a node id carrying terminal escapes or line breaks is refused, so `trellis proxy-status` never prints it', async () => {
    await h.store.createService({ name: 'esc', team: 'core', protocol: 'http', port: 8080 }, 'test');
    for (const id of ['esc-1\u001b]0;owned\u0007\u001b[2J', 'esc-1\r\nesc-2 SYNCED', 'esc-1\u0000']) {
      const client = AdsTestClient.open(h.xdsAddress, 'sotw');
      client.send({ node: testNode('esc', id), typeUrl: TypeUrl.Cluster });
      const closed = await client.closedWith();
      client.close();
      expect(closed.code).toBe(GrpcStatus.INVALID_ARGUMENT);
      expect(closed.details).toMatch(/node.id/);
    }
    await h.cp.statusWriter.flush();
    expect(await h.store.listProxyStatuses('esc')).toEqual([]);
  });

  it('writes within the budget, deletes on disconnect, and vanishes with the replica', async () => {
    for (let i = 0; i < 3; i++) {
      const c = AdsTestClient.open(h.xdsAddress, 'sotw');
      c.send({ node: testNode('a', `a-status-${i}`), typeUrl: TypeUrl.Cluster });
      clients.push(c);
    }
    await Promise.all(clients.map((c) => c.next()));
    // One write per 300 ms flush: the third record lands two flushes after the first.
    const first = await eventually('a first status', async () =>
      (await h.store.listProxyStatuses('a')).length >= 1 ? Date.now() : undefined,
    );
    const all = await eventually('three statuses', async () =>
      (await h.store.listProxyStatuses('a')).length === 3 ? Date.now() : undefined,
    );
    expect(all - first).toBeGreaterThanOrEqual(450);
    const statuses = await h.store.listProxyStatuses('a');
    expect(statuses.map((s) => s.nodeId).sort()).toEqual(['a-status-0', 'a-status-1', 'a-status-2']);
    expect(statuses.every((s) => s.controlPlane === 'cp-test' && s.types.cds?.lastSentVersion)).toBe(true);
    // Every record written: the backlog gauge says so (writer.backlog's counting: proxy-status-writer.test.ts).
    await eventually('the status backlog gauge at 0', async () => {
      const text = await (await fetch(`${h.httpUrl}/metrics`)).text();
      return /^trellis_control_plane_proxy_status_backlog 0$/m.test(text) ? true : undefined;
    });

    clients.shift()!.close();
    await eventually('the closed stream’s status gone', async () =>
      (await h.store.listProxyStatuses('a')).length === 2 ? true : undefined,
    );

    await h.cp.close();
    expect(await h.store.listProxyStatuses('a')).toEqual([]);
  });
});

describe('proxy status under a connection storm', () => {
  const SERVICES = 60;
  const STREAMS = 240;
  let h: ControlPlaneHarness;
  const clients: AdsTestClient<'sotw'>[] = [];

  beforeAll(async () => {
    // Flushes fall due every 100 ms with room for 20 records, so the storm's records queue behind its pushes; and a
    // 1 ms fan-out slice keeps the identities' first translations spread over many event-loop turns meanwhile.
    h = await startControlPlaneHarness({
      TRELLIS_PROXY_STATUS_INTERVAL_MS: 100,
      TRELLIS_PROXY_STATUS_MAX_WRITES: 20,
      TRELLIS_XDS_FANOUT_SLICE_MS: 1,
    });
    for (let i = 0; i < SERVICES; i++) {
      await h.store.createService(
        { name: `storm-${i}`, team: 'core', protocol: 'http', port: 8080, dependencies: [{ service: `storm-${(i + 1) % SERVICES}` }] },
        'test',
      );
    }
    await eventually('the model to hold every service', () => ((h.cp.model()?.services.size ?? 0) >= SERVICES ? true : undefined));
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await h?.stop();
  });

  it('every stream of the storm gets its record in etcd, with what it was sent and ACKed, and the backlog drains to 0', async () => {
    const streams = Array.from({ length: STREAMS }, (_, p) => {
      const service = `storm-${p % SERVICES}`;
      const client = AdsTestClient.open(h.xdsAddress, 'sotw');
      clients.push(client);
      client.send({ node: testNode(service, `${service}-${p}`), typeUrl: TypeUrl.Cluster });
      return { service, nodeId: `${service}-${p}`, client };
    });
    const acked = await Promise.all(
      streams.map(async ({ client }) => {
        const response = await client.next(60_000);
        client.ack(TypeUrl.Cluster, response);
        return response.versionInfo;
      }),
    );

    const records = await eventually(
      'a record of every stream with its ACK',
      async () => {
        const all = (await Promise.all(Array.from({ length: SERVICES }, (_, i) => h.store.listProxyStatuses(`storm-${i}`)))).flat();
        const byNode = new Map(all.map((r) => [r.nodeId, r]));
        return streams.every(({ nodeId }, p) => byNode.get(nodeId)?.types.cds?.lastAckedVersion === acked[p]) ? byNode : undefined;
      },
      60_000,
    );
    expect(records.size).toBe(STREAMS);
    for (const [p, { nodeId, service }] of streams.entries()) {
      expect(records.get(nodeId)).toMatchObject({ service, controlPlane: 'cp-test', types: { cds: { lastSentVersion: acked[p] } } });
    }
    const metrics = await eventually('the status backlog gauge at 0', async () => {
      const text = await (await fetch(`${h.httpUrl}/metrics`)).text();
      return /^trellis_control_plane_proxy_status_backlog 0$/m.test(text) ? text : undefined;
    });
    // How many flushes yielded depends on the machine's speed; the counter is there for operators to read.
    expect(metrics).toMatch(/^trellis_control_plane_proxy_status_flushes_deferred_total \d+$/m);
  });
});
