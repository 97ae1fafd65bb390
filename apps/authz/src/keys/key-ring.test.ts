import type { AuthzPublicKey } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { Registry } from 'prom-client';
import { AuthzMetrics } from '../metrics';
import { KeyRing, type AuthzKeyStore } from './key-ring';
import { generateSigningKey } from './signing-key';

/** An in-memory key store whose writes can be held back, to interleave reconciles. */
class SlowKeyStore implements AuthzKeyStore {
  readonly keys = new Map<string, AuthzPublicKey>();
  hold: Promise<void> = Promise.resolve();
  async listAuthzKeys() {
    return [...this.keys.values()];
  }
  async putAuthzKey(key: AuthzPublicKey) {
    await this.hold;
    this.keys.set(key.kid, key);
  }
  async deleteAuthzKey(kid: string) {
    this.keys.delete(kid);
  }
}

describe('KeyRing', () => {
  const options = { publishLeadSeconds: 60, tokenTtlSeconds: 900, clockSkewSeconds: 30 };
  const make = (store: AuthzKeyStore, now: () => number = Date.now) =>
    new KeyRing(store, options, createLogger('authz', 'silent'), new AuthzMetrics(new Registry()), now);

  it('publishes a key added while a reconcile is in flight (the next run sees it)', async () => {
    const store = new SlowKeyStore();
    const ring = make(store);
    const [k1, k2] = await Promise.all([generateSigningKey(), generateSigningKey()]);
    let release!: () => void;
    store.hold = new Promise((resolve) => (release = resolve));
    const first = ring.setLocalKeys([k1]);
    await new Promise((resolve) => setImmediate(resolve)); // the first run has planned and is writing k1
    const second = ring.setLocalKeys([k1, k2]);
    release();
    await Promise.all([first, second]);
    expect([...store.keys.keys()].sort()).toEqual([k1.kid, k2.kid].sort());
    expect(ring.signer()?.kid).toBe(k1.kid); // k2 waits for its lead time
  });

  it('signs with a key only once etcd holds it, and serves it in the JWKS before it signs', async () => {
    let now = Date.UTC(2026, 0, 1);
    const store = new SlowKeyStore();
    const ring = make(store, () => now);
    const [k1, k2] = await Promise.all([generateSigningKey(), generateSigningKey('ES256')]);
    await ring.setLocalKeys([k1]);
    await ring.setLocalKeys([k1, k2]);
    expect(
      ring
        .jwks()
        .keys.map((k) => k.kid)
        .sort(),
    ).toEqual([k1.kid, k2.kid].sort());
    expect(ring.signer()?.kid).toBe(k1.kid);
    now += 60_000;
    expect(ring.signer()?.kid).toBe(k2.kid);
    expect(ring.verificationKey(k1.kid)).toBeDefined();
  });
});
