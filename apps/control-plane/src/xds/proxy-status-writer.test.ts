// ProxyStatusWriter against a real etcd: closing while a flush is under way must not
// leave a lease (and the records written under it) behind.
import { connectEtcd, KeyLayout, MeshStore, type EtcdClient } from '@trellis/mesh-schema';
import fc from 'fast-check';
import { ADS_PUSH_ORDER, TYPE_SHORT_NAME, TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import { propertyRuns } from '@trellis/mesh-schema/testing';
import { createLogger } from '@trellis/runtime';
import { eventually, startEtcd, type TestEtcd } from '@trellis/testing';
import { ProxyStatusWriter, statusFlushYields, WRITES_PER_TXN, type FlushActivity } from './proxy-status-writer';
import type { PushActivity } from './snapshot-cache';

let etcd: TestEtcd;
let client: EtcdClient;

beforeAll(async () => {
  etcd = await startEtcd();
  client = connectEtcd({ endpoints: etcd.endpoints });
});
afterAll(async () => {
  client?.close();
  await etcd?.close();
});

it('close() waits for a flush under way, then revokes the lease it granted', async () => {
  const layout = new KeyLayout(etcd.prefix);
  const store = new MeshStore(client, layout);
  const warnings: unknown[] = [];
  const logger = createLogger('test', 'silent');
  logger.warn = ((obj: unknown) => void warnings.push(obj)) as typeof logger.warn;
  const writer = new ProxyStatusWriter({ client, store, controlPlaneId: 'cp-test', logger, leaseTtlSeconds: 60 });
  const leasesBefore = (await client.leaseClient.leaseLeases()).leases.length;

  writer.onStreamOpen({ streamId: 1, nodeId: 'a-1', identity: { service: 'a', kind: 'envoy' }, protocol: 'sotw', connectedAt: new Date() });
  // The first flush grants the lease; close() arrives while that is still in flight.
  const flushing = writer.flush();
  await writer.close();
  await flushing;

  expect((await client.leaseClient.leaseLeases()).leases.length).toBe(leasesBefore);
  expect(await store.listProxyStatuses('a')).toEqual([]);
  expect(warnings).toEqual([]);
});

it('writes many streams in batched txns within the flush budget, and removes a closed stream’s record', async () => {
  const layout = new KeyLayout(etcd.prefix);
  const store = new MeshStore(client, layout);
  const results: string[] = [];
  const writer = new ProxyStatusWriter({
    client,
    store,
    controlPlaneId: 'cp-batch',
    logger: createLogger('test', 'silent'),
    leaseTtlSeconds: 60,
    maxWritesPerFlush: 100,
    onWrite: (result) => results.push(result),
  });
  const streams = Array.from({ length: 150 }, (_, i) => ({
    streamId: i + 1,
    nodeId: `many-${i}`,
    identity: { service: 'many', kind: 'envoy' as const },
    protocol: 'sotw' as const,
    connectedAt: new Date(),
  }));
  for (const stream of streams) {
    writer.onStreamOpen(stream);
    writer.onResponse(stream, { typeUrl: TypeUrl.Cluster, version: 'v1', meshRevision: '7' });
    writer.onAck(stream, TypeUrl.Cluster, 'v1');
  }
  expect(writer.backlog).toBe(150);
  await writer.flush();
  expect(results).toEqual(Array(100).fill('ok')); // the budget holds across txns
  expect(writer.backlog).toBe(50);
  await writer.flush();
  expect(writer.backlog).toBe(0);
  const stored = await store.listProxyStatuses('many');
  expect(stored).toHaveLength(150);
  expect(stored.every((s) => s.types.cds?.lastAckedVersion === 'v1' && s.meshRevision === '7')).toBe(true);

  writer.onStreamClosed(streams[0]!);
  writer.onAck(streams[1]!, TypeUrl.Cluster, 'v2');
  expect(writer.backlog).toBe(2); // one record to delete, one to rewrite
  await writer.flush();
  const after = await store.listProxyStatuses('many');
  expect(after.map((s) => s.nodeId)).not.toContain('many-0');
  expect(after.find((s) => s.nodeId === 'many-1')?.types.cds?.lastAckedVersion).toBe('v2');

  // A type first answered after the record was written joins it at the next write, beside the ones it had.
  writer.onResponse(streams[2]!, { typeUrl: TypeUrl.Listener, version: 'l1', meshRevision: '8' });
  await writer.flush();
  const grown = (await store.listProxyStatuses('many')).find((s) => s.nodeId === 'many-2');
  expect(grown?.types).toEqual({ cds: { lastSentVersion: 'v1', lastAckedVersion: 'v1' }, lds: { lastSentVersion: 'l1' } });
  expect(grown?.meshRevision).toBe('8');
  await writer.close();
  expect(await store.listProxyStatuses('many')).toEqual([]);
});

it('writes txns of WRITES_PER_TXN records, and halves them while an etcd with a lower --max-txn-ops refuses them', async () => {
  const small = await startEtcd({ extraArgs: ['--max-txn-ops=48'] });
  const smallClient = connectEtcd({ endpoints: small.endpoints });
  try {
    const store = new MeshStore(smallClient, new KeyLayout(small.prefix));
    const warnings: { writesPerTxn?: number }[] = [];
    const results: string[] = [];
    const logger = createLogger('test', 'silent');
    logger.warn = ((obj: { writesPerTxn?: number }) => void warnings.push(obj)) as typeof logger.warn;
    const writer = new ProxyStatusWriter({
      client: smallClient,
      store,
      controlPlaneId: 'cp-small',
      logger,
      leaseTtlSeconds: 60,
      maxWritesPerFlush: 1_000,
      onWrite: (result) => results.push(result),
    });
    for (let i = 1; i <= 300; i++)
      writer.onStreamOpen({
        streamId: i,
        nodeId: `n-${i}`,
        identity: { service: 'small', kind: 'envoy' },
        protocol: 'sotw',
        connectedAt: new Date(),
      });
    await writer.flush();
    // 128 refused, 64 refused, then txns of 32: every record in one flush, within the budget.
    expect(warnings.map((w) => w.writesPerTxn)).toEqual([WRITES_PER_TXN / 2, WRITES_PER_TXN / 4]);
    expect(writer.backlog).toBe(0);
    expect(await store.listProxyStatuses('small')).toHaveLength(300);
    expect(results.filter((r) => r === 'ok')).toHaveLength(300);
    expect(results.filter((r) => r === 'error')).toHaveLength(WRITES_PER_TXN + WRITES_PER_TXN / 2);
    await writer.close();
  } finally {
    smallClient.close();
    await small.close();
  }
});

it('stores per type what each stream was last sent, ACKed and NACKed, for any order of events and flushes between them (property)', async () => {
  const layout = new KeyLayout(etcd.prefix);
  const store = new MeshStore(client, layout);
  const event = fc.record({
    stream: fc.integer({ min: 1, max: 3 }),
    kind: fc.constantFrom('response' as const, 'ack' as const, 'nack' as const),
    typeUrl: fc.constantFrom(...ADS_PUSH_ORDER),
    version: fc.constantFrom('v1', 'v2', 'v3'),
  });
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(event, { maxLength: 25 }), fc.nat(), async (events, cutAt) => {
      const service = `prop-${++run}`;
      const writer = new ProxyStatusWriter({
        client,
        store,
        controlPlaneId: 'cp-prop',
        logger: createLogger('test', 'silent'),
        leaseTtlSeconds: 60,
      });
      const streams = [1, 2, 3].map((streamId) => ({
        streamId,
        nodeId: `${service}-${streamId}`,
        identity: { service, kind: 'envoy' as const },
        protocol: 'sotw' as const,
        connectedAt: new Date(),
      }));
      for (const stream of streams) writer.onStreamOpen(stream);
      // The reference: each stream's record types, keyed by short name (the record lists them in push order).
      const expected = new Map<number, Record<string, Record<string, unknown>>>(streams.map((s) => [s.streamId, {}]));
      // A flush part way: what it wrote leaves the backlog, and a record changed after it is queued (and written) again.
      const cut = cutAt % (events.length + 1);
      const touchedAfterCut = new Set(events.slice(cut).map((e) => e.stream));
      for (const [i, e] of events.entries()) {
        if (i === cut) {
          await writer.flush();
          expect(writer.backlog).toBe(0);
        }
        const stream = streams[e.stream - 1]!;
        const types = expected.get(e.stream)!;
        const entry = (types[TYPE_SHORT_NAME[e.typeUrl as XdsTypeUrl]] ??= {});
        if (e.kind === 'response') {
          writer.onResponse(stream, { typeUrl: e.typeUrl, version: e.version, meshRevision: '9' });
          entry['lastSentVersion'] = e.version;
        } else if (e.kind === 'ack') {
          writer.onAck(stream, e.typeUrl, e.version);
          entry['lastAckedVersion'] = e.version;
        } else {
          writer.onNack(stream, e.typeUrl, e.version, 'bad config', '9');
          entry['lastNack'] = { version: e.version, error: 'bad config', meshRevision: '9' };
        }
      }
      expect(writer.backlog).toBe(cut === events.length ? 3 : touchedAfterCut.size);
      await writer.flush();
      expect(writer.backlog).toBe(0);
      const stored = await store.listProxyStatuses(service);
      expect(stored).toHaveLength(3);
      for (const record of stored) {
        const streamId = Number(record.nodeId.slice(service.length + 1));
        const touched = expected.get(streamId)!;
        const inPushOrder = ADS_PUSH_ORDER.map((typeUrl) => TYPE_SHORT_NAME[typeUrl]).filter((short) => short in touched);
        expect(Object.keys(record.types)).toEqual(inPushOrder);
        expect(record.types).toMatchObject(expected.get(streamId)!);
      }
      await writer.close();
    }),
    { numRuns: propertyRuns(15) },
  );
});

describe('statusFlushYields: a due flush yields to the xDS fan-out and the streams being answered', () => {
  const policy = { settleMs: 250, maxDeferMs: 10_000 };
  const idle: FlushActivity = { pendingBuilds: 0, msSinceBuild: Infinity, msSinceResponse: Infinity };

  it('yields while identities wait for translation, or one was built or a response written within settleMs, never past maxDeferMs', () => {
    expect(statusFlushYields(idle, 0, policy)).toBe(false);
    expect(statusFlushYields({ ...idle, msSinceBuild: 250 }, 0, policy)).toBe(false);
    expect(statusFlushYields({ ...idle, msSinceBuild: 249 }, 0, policy)).toBe(true);
    expect(statusFlushYields({ ...idle, pendingBuilds: 4_000 }, 0, policy)).toBe(true);
    // Every identity built, its streams still asking for endpoints and routes.
    expect(statusFlushYields({ ...idle, msSinceBuild: 900, msSinceResponse: 249 }, 0, policy)).toBe(true);
    expect(statusFlushYields({ ...idle, msSinceBuild: 900, msSinceResponse: 250 }, 0, policy)).toBe(false);
    expect(statusFlushYields({ pendingBuilds: 4_000, msSinceBuild: 0, msSinceResponse: 0 }, 9_999, policy)).toBe(true);
    expect(statusFlushYields({ pendingBuilds: 4_000, msSinceBuild: 0, msSinceResponse: 0 }, 10_000, policy)).toBe(false);
    // maxDeferMs 0: flushes never yield.
    expect(statusFlushYields({ pendingBuilds: 4_000, msSinceBuild: 0, msSinceResponse: 0 }, 0, { settleMs: 250, maxDeferMs: 0 })).toBe(
      false,
    );
  });

  it('is the rule for any activity and deferral (property)', () => {
    const msSince = fc.oneof(fc.double({ min: 0, max: 5_000, noNaN: true }), fc.constant(Infinity));
    fc.assert(
      fc.property(
        fc.nat({ max: 10_000 }),
        msSince,
        msSince,
        fc.nat({ max: 20_000 }),
        fc.nat({ max: 2_000 }),
        fc.nat({ max: 20_000 }),
        (pendingBuilds, msSinceBuild, msSinceResponse, deferredForMs, settleMs, maxDeferMs) => {
          const yields = statusFlushYields({ pendingBuilds, msSinceBuild, msSinceResponse }, deferredForMs, { settleMs, maxDeferMs });
          const busy = pendingBuilds > 0 || msSinceBuild < settleMs || msSinceResponse < settleMs;
          expect(yields).toBe(busy && deferredForMs < maxDeferMs);
        },
      ),
      { numRuns: propertyRuns(200) },
    );
  });
});

it('a flush due while streams are still being answered waits; once the responses stop, every record is written', async () => {
  const layout = new KeyLayout(etcd.prefix);
  const store = new MeshStore(client, layout);
  let deferred = 0;
  const writer = new ProxyStatusWriter({
    client,
    store,
    controlPlaneId: 'cp-answering',
    logger: createLogger('test', 'silent'),
    leaseTtlSeconds: 60,
    intervalMs: 100,
    // Long enough that the probe below, answering a stream at every poll, keeps the writer waiting on a loaded machine.
    settleMs: 5_000,
    // The fan-out has built every identity: only the responses hold the flushes back.
    pushActivity: () => ({ pendingBuilds: 0, msSinceBuild: Infinity }),
    maxDeferMs: 600_000,
    onDeferred: () => deferred++,
  });
  const streams = Array.from({ length: 20 }, (_, i) => ({
    streamId: i + 1,
    nodeId: `answering-${i}`,
    identity: { service: 'answering', kind: 'envoy' as const },
    protocol: 'sotw' as const,
    connectedAt: new Date(),
  }));
  writer.start();
  try {
    for (const stream of streams) writer.onStreamOpen(stream);
    let next = 0;
    await eventually(
      'three flushes yielding to the responses',
      () => {
        writer.onResponse(streams[next++ % streams.length]!, { typeUrl: TypeUrl.ClusterLoadAssignment, version: 'e1', meshRevision: '7' });
        return deferred >= 3;
      },
      60_000,
    );
    expect(writer.backlog).toBe(20);
    expect(await store.listProxyStatuses('answering')).toEqual([]);

    await eventually('every record written once the streams are answered', () => writer.backlog === 0, 60_000);
    await writer.flush(); // the backlog counts records not yet taken: the last txn may still be in flight
    expect(await store.listProxyStatuses('answering')).toHaveLength(20);
  } finally {
    await writer.close();
  }
});

it('a flush due while the fan-out translates waits, keeps every record in the backlog, and writes them all once it is over', async () => {
  const layout = new KeyLayout(etcd.prefix);
  const store = new MeshStore(client, layout);
  let activity: PushActivity = { pendingBuilds: 5_000, msSinceBuild: 0 };
  let deferred = 0;
  const writer = new ProxyStatusWriter({
    client,
    store,
    controlPlaneId: 'cp-yield',
    logger: createLogger('test', 'silent'),
    leaseTtlSeconds: 60,
    intervalMs: 100,
    maxWritesPerFlush: 40,
    pushActivity: () => activity,
    maxDeferMs: 600_000,
    onDeferred: () => deferred++,
  });
  const streams = Array.from({ length: 100 }, (_, i) => ({
    streamId: i + 1,
    nodeId: `yield-${i}`,
    identity: { service: 'yield', kind: 'envoy' as const },
    protocol: 'sotw' as const,
    connectedAt: new Date(),
  }));
  writer.start();
  try {
    for (const stream of streams) {
      writer.onStreamOpen(stream);
      writer.onResponse(stream, { typeUrl: TypeUrl.Cluster, version: 'v1', meshRevision: '7' });
    }
    await eventually('three flushes yielding', () => deferred >= 3, 60_000);
    expect(writer.backlog).toBe(100);
    expect(await store.listProxyStatuses('yield')).toEqual([]);
    // Changes made meanwhile land in the records they belong to; a stream that ends is deleted, not written.
    for (const stream of streams) writer.onAck(stream, TypeUrl.Cluster, 'v1');
    writer.onStreamClosed(streams[0]!);
    expect(writer.backlog).toBe(100);

    activity = { pendingBuilds: 0, msSinceBuild: Infinity };
    await eventually('every record written', () => writer.backlog === 0, 60_000);
    await writer.flush(); // the backlog counts records not yet taken: the last txn may still be in flight
    const stored = await store.listProxyStatuses('yield');
    expect(stored.map((s) => s.nodeId).sort()).toEqual(
      streams
        .slice(1)
        .map((s) => s.nodeId)
        .sort(),
    );
    expect(stored.every((s) => s.types.cds?.lastSentVersion === 'v1' && s.types.cds.lastAckedVersion === 'v1')).toBe(true);
  } finally {
    await writer.close();
  }
});

it('flushes that have yielded for maxDeferMs write anyway: a fan-out that never ends does not starve the records', async () => {
  const layout = new KeyLayout(etcd.prefix);
  const store = new MeshStore(client, layout);
  let deferred = 0;
  const writer = new ProxyStatusWriter({
    client,
    store,
    controlPlaneId: 'cp-starve',
    logger: createLogger('test', 'silent'),
    leaseTtlSeconds: 60,
    intervalMs: 100,
    maxWritesPerFlush: 10,
    pushActivity: () => ({ pendingBuilds: 1, msSinceBuild: 0 }),
    maxDeferMs: 300,
    onDeferred: () => deferred++,
  });
  writer.start();
  try {
    for (let i = 0; i < 25; i++) {
      writer.onStreamOpen({
        streamId: i + 1,
        nodeId: `starve-${i}`,
        identity: { service: 'starve', kind: 'envoy' },
        protocol: 'sotw',
        connectedAt: new Date(),
      });
    }
    await eventually('every record written while the fan-out stays busy', () => writer.backlog === 0, 60_000);
    await writer.flush(); // the backlog counts records not yet taken: the last txn may still be in flight
    expect(await store.listProxyStatuses('starve')).toHaveLength(25);
    expect(deferred).toBeGreaterThan(0);
  } finally {
    await writer.close();
  }
});
