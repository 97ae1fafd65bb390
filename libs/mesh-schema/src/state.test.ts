import { generateKeyPairSync } from 'node:crypto';
import { KeyLayout } from './keys';
import { applyKvEvent, buildMeshState, emptyMeshState, type InvalidRecord, type KvEvent } from './state';

/** The modulus of a real RSA-2048 key: AuthzPublicKey refuses anything weaker. */
const TEST_RSA_N = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' }).n!;

const layout = new KeyLayout('/t/');
const at = '2026-01-01T00:00:00Z';
let rev = 100;
const put = (key: string, value: unknown): KvEvent => {
  rev += 1;
  return {
    type: 'put',
    key,
    value: Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)),
    modRevision: String(rev),
    createRevision: '5',
  };
};
const del = (key: string): KvEvent => {
  rev += 1;
  return { type: 'delete', key, value: Buffer.alloc(0), modRevision: String(rev), createRevision: '0' };
};
const service = (name: string, port = 80) => ({
  spec: { name, team: 't', description: '', protocol: 'http', port, dependencies: [], policy: {} },
  generation: 1,
  created: { actor: 'a', at },
  updated: { actor: 'a', at },
});
const instance = (svc: string, id: string) => ({ service: svc, id, address: '10.0.0.1', port: 80, platform: 'vm', registeredAt: at });

function collect() {
  const invalid: InvalidRecord[] = [];
  return { invalid, onInvalid: (e: InvalidRecord) => invalid.push(e) };
}

describe('applyKvEvent', () => {
  it('puts and deletes services, reporting each change', () => {
    const state = emptyMeshState();
    const { onInvalid } = collect();
    const p = put(layout.service('cart'), service('cart'));
    expect(applyKvEvent(state, layout, p, onInvalid)).toEqual({
      kind: 'service',
      type: 'put',
      service: 'cart',
      modRevision: p.modRevision,
    });
    expect(state.services.get('cart')).toEqual({ value: service('cart'), modRevision: p.modRevision, createRevision: '5' });
    const d = del(layout.service('cart'));
    expect(applyKvEvent(state, layout, d, onInvalid)).toEqual({
      kind: 'service',
      type: 'delete',
      service: 'cart',
      modRevision: d.modRevision,
    });
    expect(state.services.size).toBe(0);
  });

  it('groups instances by service and drops a service entry when its last instance goes', () => {
    const state = emptyMeshState();
    const { onInvalid } = collect();
    applyKvEvent(state, layout, put(layout.instance('cart', 'a'), instance('cart', 'a')), onInvalid);
    applyKvEvent(state, layout, put(layout.instance('cart', 'b'), instance('cart', 'b')), onInvalid);
    expect([...state.instances.get('cart')!.keys()]).toEqual(['a', 'b']);
    expect(applyKvEvent(state, layout, del(layout.instance('cart', 'a')), onInvalid)).toMatchObject({
      kind: 'instance',
      type: 'delete',
      id: 'a',
    });
    applyKvEvent(state, layout, del(layout.instance('cart', 'b')), onInvalid);
    expect(state.instances.has('cart')).toBe(false);
  });

  it('ignores history, proxy status and foreign keys', () => {
    const state = emptyMeshState();
    const { onInvalid, invalid } = collect();
    expect(applyKvEvent(state, layout, put(layout.history('cart', 1), { anything: true }), onInvalid)).toBeUndefined();
    expect(applyKvEvent(state, layout, put(layout.proxyStatus('cart', 'n', 'cp/1'), 'not json'), onInvalid)).toBeUndefined();
    expect(applyKvEvent(state, layout, put('/elsewhere/services/cart', service('cart')), onInvalid)).toBeUndefined();
    expect(invalid).toEqual([]);
    expect(state).toEqual(emptyMeshState());
  });

  it('treats an invalid value as absent: reports it and removes what was there', () => {
    const state = emptyMeshState();
    const { onInvalid, invalid } = collect();
    applyKvEvent(state, layout, put(layout.service('cart'), service('cart')), onInvalid);
    const bad = put(layout.service('cart'), '{"spec":');
    expect(applyKvEvent(state, layout, bad, onInvalid)).toEqual({
      kind: 'service',
      type: 'delete',
      service: 'cart',
      modRevision: bad.modRevision,
    });
    expect(state.services.has('cart')).toBe(false);
    expect(invalid.map((e) => e.key)).toEqual([layout.service('cart')]);
    expect(state.invalid.get(layout.service('cart'))).toMatchObject({ kind: 'service', name: 'cart', modRevision: bad.modRevision });
    // Invalid again while absent: only the list of unusable records changed.
    const worse = put(layout.service('cart'), '{}');
    expect(applyKvEvent(state, layout, worse, onInvalid)).toMatchObject({ kind: 'invalid', modRevision: worse.modRevision });
    expect(state.invalid.get(layout.service('cart'))?.modRevision).toBe(worse.modRevision);
    // Repaired: back in the mirror, off the list.
    applyKvEvent(state, layout, put(layout.service('cart'), service('cart')), onInvalid);
    expect(state.services.has('cart')).toBe(true);
    expect(state.invalid.size).toBe(0);
  });

  it('lists an unusable value that was never valid, and forgets it when the key is deleted', () => {
    const state = emptyMeshState();
    const { onInvalid } = collect();
    const bad = put(layout.instance('cart', 'a'), { ...instance('cart', 'a'), address: 'not-an-ip' });
    expect(applyKvEvent(state, layout, bad, onInvalid)).toMatchObject({ kind: 'invalid', modRevision: bad.modRevision });
    expect(state.invalid.get(layout.instance('cart', 'a'))).toMatchObject({ kind: 'instance', name: 'cart/a' });
    const gone = del(layout.instance('cart', 'a'));
    expect(applyKvEvent(state, layout, gone, onInvalid)).toMatchObject({ kind: 'invalid', modRevision: gone.modRevision });
    expect(state.invalid.size).toBe(0);
  });

  it('refuses a record stored under another name', () => {
    const state = emptyMeshState();
    const { onInvalid, invalid } = collect();
    expect(applyKvEvent(state, layout, put(layout.service('cart'), service('search')), onInvalid)).toMatchObject({ kind: 'invalid' });
    expect(applyKvEvent(state, layout, put(layout.instance('cart', 'a'), instance('cart', 'b')), onInvalid)).toMatchObject({
      kind: 'invalid',
    });
    expect(invalid.map((e) => e.issues)).toEqual([['spec.name must match the key'], ['service and id must match the key']]);
  });

  it('tracks mesh settings and authz keys', () => {
    const state = emptyMeshState();
    const { onInvalid } = collect();
    applyKvEvent(state, layout, put(layout.meshSettings(), { tokenIssuer: 'trellis' }), onInvalid);
    expect(state.meshSettings).toEqual({ tokenIssuer: 'trellis', clockSkewSeconds: 30 });
    const key = { kid: 'k1', jwk: { kty: 'RSA', kid: 'k1', alg: 'RS256', n: TEST_RSA_N, e: 'AQAB' }, publishedAt: at, activeFrom: at };
    expect(applyKvEvent(state, layout, put(layout.authzKey('k1'), key), onInvalid)).toMatchObject({
      kind: 'authzKey',
      type: 'put',
      id: 'k1',
    });
    expect(state.authzKeys.get('k1')?.jwk.use).toBe('sig');
    applyKvEvent(state, layout, del(layout.meshSettings()), onInvalid);
    expect(state.meshSettings).toBeUndefined();
  });
});

describe('buildMeshState', () => {
  it('equals replaying the same keys as events, at the snapshot revision', () => {
    const { onInvalid } = collect();
    const kvs = [
      put(layout.service('a'), service('a')),
      put(layout.instance('a', 'i'), instance('a', 'i')),
      put(layout.service('bad'), 'x'),
    ];
    const built = buildMeshState(layout, '42', kvs, onInvalid);
    const replayed = emptyMeshState('42');
    for (const kv of kvs) applyKvEvent(replayed, layout, kv, onInvalid);
    expect(built).toEqual(replayed);
    expect(built.revision).toBe('42');
    expect([...built.services.keys()]).toEqual(['a']);
  });
});
