// MeshWatcher against a real etcd: every change exactly once and in order,
// across connection loss, an etcd restart, and a compaction of its resume point.
import type { Etcd3 } from 'etcd3';
import { eventually, startEtcd, startTcpProxy, type TcpProxy, type TestEtcd } from '@trellis/testing';
import { connectEtcd } from '../src/etcd-client';
import { KeyLayout } from '../src/keys';
import type { MeshChange } from '../src/state';
import { MeshStore } from '../src/store';
import { MeshWatcher, type MeshUpdate } from '../src/watcher';
import { WrittenValues } from '../src/written-values';
import { aService, anInstance } from './fixtures';

let etcd: TestEtcd;
let writer: Etcd3;
let layout: KeyLayout;
let store: MeshStore;
let proxy: TcpProxy;
let watchClient: Etcd3;
const watchers: MeshWatcher[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
  writer = etcd.client();
  layout = new KeyLayout(etcd.prefix);
  store = new MeshStore(writer, layout);
  const target = new URL(etcd.endpoints[0]!);
  proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) });
  watchClient = connectEtcd({ endpoints: [`http://${proxy.host}:${proxy.port}`] });
});
afterEach(async () => {
  await Promise.all(watchers.splice(0).map((w) => w.close()));
  proxy.resume();
  await writer.delete().prefix(etcd.prefix);
});
afterAll(async () => {
  watchClient?.close();
  await proxy?.close();
  await etcd?.close();
});

/** Starts a watcher and records every update it emits. */
function watch(client: Etcd3 = watchClient, writtenValues?: WrittenValues) {
  const invalidKeys: string[] = [];
  const reported: string[] = [];
  const errors: unknown[] = [];
  const logger = {
    debug() {},
    info() {},
    warn() {},
    error: (o: { key?: string; err?: unknown }) => void (o.key ? invalidKeys.push(o.key) : errors.push(o.err)),
  };
  const watcher = MeshWatcher.start(client, layout, {
    logger,
    onInvalid: (record) => reported.push(record.key),
    ...(writtenValues ? { writtenValues } : {}),
  });
  watchers.push(watcher);
  const updates: MeshUpdate[] = [];
  const statuses: boolean[] = [];
  watcher.on('update', (u) => updates.push(u));
  watcher.on('status', (s) => statuses.push(s.live));
  const changes = () => updates.filter((u) => !u.reset).flatMap((u) => u.changes);
  return { watcher, updates, statuses, changes, invalidKeys, reported, errors };
}

// Raw writes that return their revision, so the expected change sequence comes from etcd itself.
const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const now = '2026-01-01T00:00:00.000Z';
async function putService(name: string, port: number): Promise<MeshChange> {
  const record = {
    spec: { ...aService(name), port, description: '', dependencies: [], policy: {} },
    generation: 1,
    created: { actor: 't', at: now },
    updated: { actor: 't', at: now },
  };
  const res = await writer.kv.put({ key: Buffer.from(layout.service(name)), value: json(record) });
  return { kind: 'service', type: 'put', service: name, modRevision: res.header.revision };
}
/** A watcher that is live and records each revision it reports, and a service written after it went live. */
async function liveWatchWithAServiceWritten() {
  const w = watch();
  const revisions: string[] = [];
  w.watcher.on('revision', (revision) => revisions.push(revision));
  await w.watcher.whenReady();
  await eventually('watch connected', () => w.watcher.live);
  const before = await putService('before', 1);
  return { w, revisions, before };
}
async function putInstance(service: string, id: string): Promise<MeshChange> {
  const record = { ...anInstance(service, id), labels: {}, locality: { region: '', zone: '', subZone: '' }, weight: 1, registeredAt: now };
  const res = await writer.kv.put({ key: Buffer.from(layout.instance(service, id)), value: json(record) });
  return { kind: 'instance', type: 'put', service, id, modRevision: res.header.revision };
}
async function deleteKey(key: string, change: Omit<MeshChange, 'modRevision' | 'type'>): Promise<MeshChange> {
  const res = await writer.kv.deleteRange({ key: Buffer.from(key) });
  return { ...change, type: 'delete', modRevision: res.header.revision };
}

/** A mixed burst of n changes: services, instances, deletes. */
async function writeBurst(tag: string, n: number): Promise<MeshChange[]> {
  const out: MeshChange[] = [];
  for (let i = 0; i < n; i++) {
    const svc = `${tag}-${i % 3}`;
    switch (i % 4) {
      case 0:
        out.push(await putService(svc, 1000 + i));
        break;
      case 1:
        out.push(await putInstance(svc, `vm-${i}`));
        break;
      case 2: {
        const prev = `${tag}-${(i - 1) % 3}`; // the instance put by the previous step
        out.push(await deleteKey(layout.instance(prev, `vm-${i - 1}`), { kind: 'instance', service: prev, id: `vm-${i - 1}` }));
        break;
      }
      default:
        out.push(await putService(svc, 2000 + i));
    }
  }
  return out;
}

/** What a watcher started now would hold. */
async function freshState() {
  const fresh = watch(writer);
  await fresh.watcher.whenReady();
  return fresh.watcher.state;
}

it('loads a snapshot, then emits every change once and in order', async () => {
  await store.createService(aService('before'), 'a');
  await store.registerInstance(anInstance('before', 'vm-0'), 30);
  const w = watch();
  await w.watcher.whenReady();
  expect(w.updates[0]).toMatchObject({ reset: true, changes: [] });
  expect(w.watcher.state.services.get('before')?.value.generation).toBe(1);
  expect([...(w.watcher.state.instances.get('before')?.keys() ?? [])]).toEqual(['vm-0']);
  await eventually('watch connected', () => w.watcher.live);

  const expected = await writeBurst('burst', 40);
  await eventually('all changes', () => w.changes().length >= expected.length);
  expect(w.changes()).toEqual(expected);
  expect(w.watcher.state.revision).toBe(expected.at(-1)!.modRevision);
  expect(w.watcher.state).toEqual(await freshState());
});

it("takes its own store's writes as the store checked them, and parses every other value", async () => {
  const writtenValues = new WrittenValues();
  const ownStore = new MeshStore(writer, layout, { writtenValues });
  const w = watch(watchClient, writtenValues);
  await w.watcher.whenReady();
  await eventually('watch connected', () => w.watcher.live);

  // Back to back: the update's entry is taken while the create's echo may still be on its way.
  const created = await ownStore.createService(aService('own', { dependencies: [{ service: 'other' }] }), 'a');
  const updated = await ownStore.updateService(aService('own', { port: 9090 }), 'a', { ifModRevision: created.modRevision });
  const { record: instance } = await ownStore.registerInstance(anInstance('own', 'vm-1'), 30);
  await eventually('the instance', () => w.watcher.state.instances.get('own')?.has('vm-1') ?? false);
  // The very objects the store wrote: nothing was parsed again.
  expect(w.watcher.state.services.get('own')?.value).toBe(updated.value);
  expect(w.watcher.state.instances.get('own')?.get('vm-1')).toBe(instance);
  expect(Object.isFrozen(updated.value.spec)).toBe(true);
  expect(writtenValues.size).toBe(0);

  // Another writer's bytes at the same keys, and a value nobody may use, are parsed as usual.
  await store.updateService(aService('own', { port: 7070 }), 'b', { ifModRevision: updated.modRevision });
  await writer.put(layout.instance('own', 'vm-1')).value('{"not":"an instance"}');
  await eventually('the other writes', () => w.watcher.state.invalid.has(layout.instance('own', 'vm-1')));
  expect(w.watcher.state.services.get('own')?.value.spec.port).toBe(7070);
  expect(w.watcher.state.instances.has('own')).toBe(false);
  expect(w.reported).toEqual([layout.instance('own', 'vm-1')]);
  expect(w.watcher.state).toEqual(await freshState());
});

it('mirrors deregistration tombstones, so a deleted instance can be told from an expired one', async () => {
  const w = watch();
  await w.watcher.whenReady();
  await eventually('watch connected', () => w.watcher.live);
  await store.createService(aService('tomb'), 'a');
  await store.registerInstance(anInstance('tomb', 'gone'), 30);
  await store.registerInstance(anInstance('tomb', 'stays', { address: '10.0.0.9' }), 30);
  await store.deregisterInstance('tomb', 'gone');
  await eventually('the delete', () => w.changes().some((c) => c.kind === 'instance' && c.type === 'delete' && c.id === 'gone'));
  expect([...(w.watcher.state.deregistered.get('tomb') ?? [])]).toEqual(['gone']);
  expect((await freshState()).deregistered).toEqual(w.watcher.state.deregistered);
  await store.registerInstance(anInstance('tomb', 'gone'), 30);
  await eventually('the tombstone removed', () => !w.watcher.state.deregistered.has('tomb'));
});

it('ignores history and proxy keys, and skips invalid values without stopping', async () => {
  const w = watch();
  await w.watcher.whenReady();
  await eventually('watch connected', () => w.watcher.live);
  const created = await store.createService(aService('svc'), 'a'); // service + history in one txn
  await writer.put(layout.service('broken')).value('{"not":"a record"}');
  await writer.put(layout.instance('svc', 'mismatch')).value(JSON.stringify({ ...anInstance('other', 'mismatch'), registeredAt: now }));
  const after = await putService('after', 1);
  await eventually('change after the bad ones', () => w.changes().some((c) => c.service === 'after'));
  expect(w.changes().filter((c) => c.kind !== 'invalid')).toEqual([
    { kind: 'service', type: 'put', service: 'svc', modRevision: created.modRevision },
    after,
  ]);
  expect([...w.watcher.state.services.keys()].sort()).toEqual(['after', 'svc']);
  expect(w.watcher.state.instances.size).toBe(0);
  const bad = [layout.service('broken'), layout.instance('svc', 'mismatch')];
  expect(w.invalidKeys).toEqual(bad);
  expect(w.reported).toEqual(bad);
  expect([...w.watcher.state.invalid.keys()].sort()).toEqual([...bad].sort());
});

it('is never sent proxy-status records: a status flush reaches no watcher', async () => {
  const { w, revisions, before } = await liveWatchWithAServiceWritten();
  // A status writer's flush: one txn of records (one of them not even JSON) and a deletion.
  const flushed = await writer
    .if(layout.proxyStatus('svc', 'pod-1', 'cp-0/1'), 'Create', '==', 0)
    .then(
      writer.put(layout.proxyStatus('svc', 'pod-1', 'cp-0/1')).value('{"nodeId":"pod-1"}'),
      writer.put(layout.proxyStatus('svc', 'pod-2', 'cp-0/2')).value('not json'),
      writer.delete().key(layout.proxyStatus('svc', 'pod-3', 'cp-0/3')),
    )
    .commit();
  const after = await putService('after', 1);
  await eventually('change after the flush', () => w.changes().some((c) => c.service === 'after'));
  expect(w.changes()).toEqual([before, after]);
  // etcd sent the service writes' events and nothing at the flush's revision.
  expect(revisions).toContain(before.modRevision);
  expect(revisions).toContain(after.modRevision);
  expect(revisions).not.toContain(flushed.header.revision);
  expect(w.invalidKeys).toEqual([]);
  expect(w.watcher.state.invalid.size).toBe(0);
});

it("passes over a replica's proxy-status records at the legacy keys, valid or not, and still reports their revision", async () => {
  const { w, revisions, before } = await liveWatchWithAServiceWritten();
  // What a replica of the version before the status range writes during a rolling upgrade.
  const legacy = (node: string, stream: string) => `${layout.legacyProxyStatusesOf('svc')}${node}/${encodeURIComponent(stream)}`;
  const flushed = await writer
    .if(legacy('pod-1', 'cp-0/1'), 'Create', '==', 0)
    .then(
      writer.put(legacy('pod-1', 'cp-0/1')).value('{"nodeId":"pod-1"}'),
      writer.put(legacy('pod-2', 'cp-0/2')).value('not json'),
      writer.delete().key(legacy('pod-3', 'cp-0/3')),
    )
    .commit();
  await eventually("the flush's revision", () => revisions.includes(flushed.header.revision));
  const after = await putService('after', 1);
  await eventually('change after the flush', () => w.changes().some((c) => c.service === 'after'));
  expect(w.changes()).toEqual([before, after]);
  expect(w.invalidKeys).toEqual([]);
  expect(w.reported).toEqual([]);
  expect(w.watcher.state.invalid.size).toBe(0);
});

it('keeps watching when an update listener throws, and reports an unusable value once across reloads', async () => {
  const w = watch();
  w.watcher.on('update', () => {
    throw new Error('a consumer bug');
  });
  await w.watcher.whenReady();
  await eventually('watch connected', () => w.watcher.live);
  await writer.put(layout.service('poison')).value('{"spec":');
  const first = await putService('first', 1);
  await eventually('a change after the throw', () => w.changes().some((c) => c.service === 'first'));
  const second = await putService('second', 1);
  await eventually('and the next one', () => w.changes().some((c) => c.service === 'second'));
  expect(w.changes().filter((c) => c.kind === 'service')).toEqual([first, second]);
  expect(w.errors.length).toBeGreaterThanOrEqual(3);
  expect(w.reported).toEqual([layout.service('poison')]);
  // A second watcher (a restart) reads the same bad value once too; repairing it clears the list.
  const again = watch();
  await again.watcher.whenReady();
  expect(again.reported).toEqual([layout.service('poison')]);
  await putService('poison', 1);
  await eventually('repaired', () => again.watcher.state.services.has('poison'));
  expect(again.watcher.state.invalid.size).toBe(0);
});

it('resumes after losing its connection without missing or repeating a change', async () => {
  const w = watch();
  await w.watcher.whenReady();
  await eventually('watch connected', () => w.watcher.live);
  const before = await writeBurst('a', 10);
  await eventually('first burst', () => w.changes().length >= before.length);

  proxy.pause();
  await eventually('watcher notices the cut', () => !w.watcher.live);
  const during = await writeBurst('b', 12);
  proxy.resume();
  await eventually('watch back', () => w.watcher.live);
  const after = await writeBurst('c', 8);

  const expected = [...before, ...during, ...after];
  await eventually('every change', () => w.changes().length >= expected.length);
  expect(w.changes()).toEqual(expected);
  expect(w.updates.filter((u) => u.reset)).toHaveLength(1);
  expect(w.statuses).toEqual([true, false, true]);
  expect(w.watcher.state).toEqual(await freshState());
});

it('resumes from what it applied, not from the revision stamped on a partial catch-up', async () => {
  // etcd replays a backlog in batches of at most 1000 revisions, each stamped with
  // the *current* revision. Cut the connection right after the first batch: a
  // watcher resuming from that stamp (etcd3's own behaviour) would lose the rest.
  const w = watch();
  await w.watcher.whenReady();
  await eventually('watch connected', () => w.watcher.live);

  proxy.pause();
  await eventually('watcher notices the cut', () => !w.watcher.live);
  const backlog: MeshChange[] = [];
  for (let batch = 0; batch < 30; batch++) {
    backlog.push(...(await Promise.all(Array.from({ length: 50 }, (_, i) => putService(`bulk-${batch}-${i}`, 1 + i)))));
  }
  backlog.sort((a, b) => Number(BigInt(a.modRevision) - BigInt(b.modRevision)));

  let cutAgain = false;
  w.watcher.on('update', (u) => {
    if (!u.reset && !cutAgain) {
      cutAgain = true;
      proxy.pause(); // synchronously, between etcd's batches
    }
  });
  proxy.resume();
  await eventually('first catch-up batch', () => cutAgain);
  expect(w.changes().length).toBeLessThan(backlog.length);
  await eventually('watcher notices the second cut', () => !w.watcher.live);
  proxy.resume();

  await eventually('the whole backlog', () => w.changes().length >= backlog.length);
  expect(w.changes()).toEqual(backlog);
  expect(w.updates.filter((u) => u.reset)).toHaveLength(1);
}, 120_000);

it('resumes across an etcd stop/start', async () => {
  if (!etcd.canRestart) {
    console.warn('skipped: this etcd cannot be restarted (TRELLIS_TEST_ETCD_ENDPOINTS or a container)');
    return;
  }
  const direct = connectEtcd({ endpoints: etcd.endpoints }); // the production policy, straight to etcd
  const w = watch(direct);
  await w.watcher.whenReady();
  await eventually('watch connected', () => w.watcher.live);
  const before = await writeBurst('a', 10);
  await eventually('first burst', () => w.changes().length >= before.length);

  await etcd.stop();
  await eventually('watcher notices etcd is gone', () => !w.watcher.live);
  await etcd.start();
  const after = await writeBurst('b', 10); // usually lands before the watcher has reconnected

  const expected = [...before, ...after];
  await eventually('every change', () => w.changes().length >= expected.length);
  expect(w.changes()).toEqual(expected);
  expect(w.updates.filter((u) => u.reset)).toHaveLength(1);
  expect(w.watcher.state).toEqual(await freshState());
  await w.watcher.close();
  direct.close();
});

it('recovers with a fresh snapshot when its resume revision was compacted', async () => {
  const w = watch();
  await w.watcher.whenReady();
  await eventually('watch connected', () => w.watcher.live);
  const before = await writeBurst('a', 6);
  await eventually('first burst', () => w.changes().length >= before.length);

  proxy.pause();
  await eventually('watcher notices the cut', () => !w.watcher.live);
  await writeBurst('b', 12);
  await deleteKey(layout.service('a-0'), { kind: 'service', service: 'a-0' });
  await etcd.compact();
  proxy.resume();

  await eventually('a reset after compaction', () => w.updates.filter((u) => u.reset).length === 2);
  const reset = w.updates.filter((u) => u.reset)[1]!;
  expect(reset.changes).toEqual([]);
  expect(w.watcher.state.services.has('a-0')).toBe(false);
  expect(w.watcher.state).toEqual(await freshState());

  // And it keeps watching after the recovery.
  await eventually('watch back', () => w.watcher.live);
  const later = await putService('later', 1);
  await eventually('change after recovery', () => w.changes().some((c) => c.service === 'later'));
  expect(w.changes().at(-1)).toEqual(later);
});

it('waits for etcd at start and rejects whenReady on close', async () => {
  proxy.pause();
  const w = watch();
  await new Promise((r) => setTimeout(r, 300));
  expect(w.watcher.ready).toBe(false);
  proxy.resume();
  await w.watcher.whenReady();
  expect(w.watcher.ready).toBe(true);

  proxy.pause();
  const never = watch();
  await never.watcher.close();
  await expect(never.watcher.whenReady()).rejects.toThrow(/closed before its first snapshot/);
});
