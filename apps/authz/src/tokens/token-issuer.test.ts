// The two-level cache's rules, with a fake clock and an in-memory shared cache
// (pure logic; the real Redis path is covered in test/authz.test.ts).
import { createLogger } from '@trellis/runtime';
import { decodeJwt } from 'jose';
import { Registry } from 'prom-client';
import { MemoryKeyStore } from '../../test/support/memory-key-store';
import { KeyRing } from '../keys/key-ring';
import { generateSigningKey } from '../keys/signing-key';
import { AuthzMetrics } from '../metrics';
import { mintMeshToken } from './mint';
import type { SharedLookup, SharedTokenCache } from './redis-token-cache';
import { MeshTokenIssuer, NoSigningKeyError } from './token-issuer';

class MemoryShared implements SharedTokenCache {
  readonly entries = new Map<string, { token: string; ttlMs: number }>();
  down = false;
  async get(key: string): Promise<SharedLookup> {
    if (this.down) return { result: 'error' };
    const entry = this.entries.get(key);
    return entry ? { result: 'hit', token: entry.token } : { result: 'miss' };
  }
  set(key: string, token: string, ttlMs: number): void {
    if (!this.down) this.entries.set(key, { token, ttlMs });
  }
  delete(key: string, token: string): void {
    if (this.entries.get(key)?.token === token) this.entries.delete(key);
  }
}

describe('MeshTokenIssuer', () => {
  const logger = createLogger('authz', 'silent');
  const T0 = Date.UTC(2026, 0, 1);
  let now: number;
  let metrics: AuthzMetrics;
  let shared: MemoryShared;
  let keyRing: KeyRing;
  let issuer: MeshTokenIssuer;
  const minted = async () => (await metrics.tokensMinted.get()).values.reduce((sum, v) => sum + v.value, 0);

  beforeEach(async () => {
    now = T0;
    metrics = new AuthzMetrics(new Registry());
    shared = new MemoryShared();
    keyRing = new KeyRing(
      new MemoryKeyStore(),
      { publishLeadSeconds: 60, tokenTtlSeconds: 900, clockSkewSeconds: 30 },
      logger,
      metrics,
      () => now,
    );
    await keyRing.setLocalKeys([await generateSigningKey()]);
    issuer = new MeshTokenIssuer(
      keyRing,
      shared,
      () => 'trellis',
      { ttlSeconds: 900, cacheTtlSeconds: 870 },
      metrics,
      logger,
      () => now,
    );
  });

  it('mints once, stores it in Redis for the cache TTL, then serves it from memory', async () => {
    const first = await issuer.tokenFor('a', 'b');
    expect(decodeJwt(first.token)).toMatchObject({ iss: 'trellis', sub: 'a', aud: 'b', exp: T0 / 1000 + 900 });
    expect([...shared.entries.values()][0]!.ttlMs).toBe(870_000);
    expect(issuer.cachedToken('a', 'b')).toBe(first);
    expect(await minted()).toBe(1);
  });

  it('never hands out a token with less than TTL − cache TTL (≥ the clock skew) left', async () => {
    const first = await issuer.tokenFor('a', 'b');
    now = T0 + 869_999;
    expect(issuer.cachedToken('a', 'b')).toBe(first);
    now = T0 + 870_000;
    expect(issuer.cachedToken('a', 'b')).toBeUndefined();
    // The fake Redis still holds it (a real one would have expired it too): refused all the same, re-minted.
    const second = await issuer.tokenFor('a', 'b');
    expect(second.token).not.toBe(first.token);
    expect(second.expiresAt * 1000 - now).toBe(900_000);
    expect(await minted()).toBe(2);
  });

  it('takes a token another replica put in Redis, but only one that names this pair, key and issuer', async () => {
    const kid = keyRing.signer()!.kid;
    const other = await mintMeshToken(keyRing.signer()!, { issuer: 'trellis', subject: 'a', audience: 'b', ttlSeconds: 900 }, now);
    shared.entries.set(`a:b:${kid}`, { token: other.token, ttlMs: 870_000 });
    expect((await issuer.tokenFor('a', 'b')).token).toBe(other.token);
    expect(await minted()).toBe(0);

    const wrongPair = await mintMeshToken(keyRing.signer()!, { issuer: 'trellis', subject: 'x', audience: 'b', ttlSeconds: 900 }, now);
    shared.entries.set(`c:b:${kid}`, { token: wrongPair.token, ttlMs: 870_000 });
    expect(decodeJwt((await issuer.tokenFor('c', 'b')).token).sub).toBe('c');
    expect(await minted()).toBe(1);
  });

  it('mints locally when Redis fails, and single-flights concurrent misses', async () => {
    shared.down = true;
    const tokens = await Promise.all(Array.from({ length: 10 }, () => issuer.tokenFor('a', 'b')));
    expect(new Set(tokens.map((t) => t.token)).size).toBe(1);
    expect(await minted()).toBe(1);
    const redis = (await metrics.tokenCache.get()).values.filter((v) => v.labels['layer'] === 'redis');
    expect(redis).toEqual([expect.objectContaining({ labels: { layer: 'redis', result: 'error' }, value: 1 })]);
  });

  it('signs every xDS token fresh, for the full mesh token lifetime, outside the pair cache', async () => {
    await issuer.tokenFor('a', 'b');
    now = T0 + 600_000;
    const first = await issuer.xdsTokenFor('a');
    expect(decodeJwt(first.token)).toMatchObject({ iss: 'trellis', sub: 'a', aud: 'trellis-xds', exp: (T0 + 600_000) / 1000 + 900 });
    const second = await issuer.xdsTokenFor('a');
    expect(second.token).not.toBe(first.token);
    // Neither cache holds it, and the A→B entry is untouched.
    expect(shared.entries.size).toBe(1);
    expect(issuer.cachedToken('a', 'trellis-xds')).toBeUndefined();
    expect(decodeJwt(issuer.cachedToken('a', 'b')!.token).aud).toBe('b');
    const byKind = (await metrics.tokensMinted.get()).values.map((v) => [v.labels['kind'], v.value]);
    expect(byKind).toEqual(
      expect.arrayContaining([
        ['mesh', 1],
        ['xds', 2],
      ]),
    );
  });

  it('refuses to mint without an active key', async () => {
    await keyRing.setLocalKeys([]);
    await expect(issuer.tokenFor('a', 'b')).rejects.toBeInstanceOf(NoSigningKeyError);
    await expect(issuer.xdsTokenFor('a')).rejects.toBeInstanceOf(NoSigningKeyError);
  });
});
