import { createLogger } from '@trellis/runtime';
import { Registry } from 'prom-client';
import { MemoryKeyStore } from '../../test/support/memory-key-store';
import { KeyRing } from '../keys/key-ring';
import { generateSigningKey, type SigningKey } from '../keys/signing-key';
import { AuthzMetrics } from '../metrics';
import { mintMeshToken } from './mint';
import { MeshTokenVerifier } from './token-verifier';

describe('MeshTokenVerifier', () => {
  const T0 = Date.UTC(2026, 0, 1);
  let now: number;
  let store: MemoryKeyStore;
  let keyRing: KeyRing;
  let key: SigningKey;
  let verifier: MeshTokenVerifier;

  beforeEach(async () => {
    now = T0;
    store = new MemoryKeyStore();
    keyRing = new KeyRing(
      store,
      { publishLeadSeconds: 60, tokenTtlSeconds: 900, clockSkewSeconds: 30 },
      createLogger('authz', 'silent'),
      new AuthzMetrics(new Registry()),
      () => now,
    );
    key = await generateSigningKey();
    await keyRing.setLocalKeys([key]);
    verifier = new MeshTokenVerifier(keyRing, { issuer: () => 'trellis', clockSkewSeconds: 30, maxLifetimeSeconds: 900 }, () => now);
  });

  const token = async () => (await mintMeshToken(key, { issuer: 'trellis', subject: 'a', audience: 'b', ttlSeconds: 900 }, now)).token;

  it('verifies once and answers repeats from the cache until the token expires', async () => {
    const t = await token();
    const verify = jest.spyOn(keyRing, 'verificationKey');
    expect(await verifier.verify(t, 'b')).toMatchObject({ valid: true, subject: 'a' });
    expect(await verifier.verify(t, 'b')).toMatchObject({ valid: true, subject: 'a' });
    now = T0 + 929_000;
    expect(await verifier.verify(t, 'b')).toMatchObject({ valid: true });
    now = T0 + 931_000;
    expect(await verifier.verify(t, 'b')).toMatchObject({ valid: false, reason: 'expired' });
    expect(verify).toHaveBeenCalled();
  });

  it('does not let a cached verification stand for another audience or a retired key', async () => {
    const t = await token();
    expect(await verifier.verify(t, 'b')).toMatchObject({ valid: true });
    expect(await verifier.verify(t, 'c')).toMatchObject({ valid: false, reason: 'wrong-audience' });
    // The key is withdrawn from etcd (retired): the cached result no longer counts.
    store.keys.clear();
    await keyRing.setLocalKeys([]);
    expect(await verifier.verify(t, 'b')).toMatchObject({ valid: false, reason: 'unknown-kid' });
  });
});
