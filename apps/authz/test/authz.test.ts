// authz end to end against a real etcd and a real Redis: the east-west Check,
// the shared cache, Redis failure, key rotation, inbound validation, the edge,
// the token endpoint and the ops endpoints.
import { createHash, createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, status } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { KeyLayout, MeshStore, XDS_TOKEN_AUDIENCE } from '@trellis/mesh-schema';
import { generateRootCa, issueServerCertificate } from '@trellis/pki';
import { eventually, startEtcd, startRedis, startSlowLoris, type TestEtcd, type TestRedis } from '@trellis/testing';
import { mintMeshToken } from '../src/tokens/mint';
import { FakeCloudflareTeam } from './support/cloudflare-team';
import {
  counterValue,
  deniedReason,
  KeyDir,
  okHeaders,
  outbound,
  redisConnected,
  startTestAuthz,
  type StartedAuthz,
} from './support/harness';

const ACCESS_AUD = 'a1'.repeat(16);

describe('authz', () => {
  let etcd: TestEtcd;
  let redis: TestRedis;
  let keys: KeyDir;
  let store: MeshStore;
  let team: FakeCloudflareTeam;
  let credsDir: string;
  let a: StartedAuthz;

  const http = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${a.authz.httpPort}${path}`, init);
  const jwks = async () => createLocalJWKSet((await (await http('/.well-known/jwks.json')).json()) as JSONWebKeySet);
  const bearer = (headers: Record<string, string>) => headers['authorization']!.replace(/^Bearer /, '');

  beforeAll(async () => {
    [etcd, redis, keys, team] = await Promise.all([startEtcd(), startRedis(), KeyDir.create(), FakeCloudflareTeam.start()]);
    await keys.addKey('first');
    store = new MeshStore(etcd.client(), new KeyLayout(etcd.prefix));
    const base = { team: 'shop', protocol: 'http' as const, port: 8080 };
    await store.createService(
      { ...base, name: 'checkout', dependencies: [{ service: 'orders' }, { service: 'payments' }, { service: 'stock' }] },
      'test',
    );
    await store.createService({ ...base, name: 'orders', dependencies: [{ service: 'stock' }] }, 'test');
    await store.createService({ ...base, name: 'payments' }, 'test');
    await store.createService({ ...base, name: 'stock' }, 'test');
    await store.createService({ ...base, name: 'web', ingress: { host: 'shop.example.com', pathPrefix: '/' } }, 'test');
    await store.createService(
      {
        ...base,
        name: 'admin',
        ingress: {
          host: 'shop.example.com',
          pathPrefix: '/admin',
          cloudflareAccess: { teamDomain: team.teamDomain, audience: ACCESS_AUD },
        },
      },
      'test',
    );
    credsDir = await mkdtemp(join(tmpdir(), 'authz-callers-'));
    await writeFile(join(credsDir, 'callers'), 'checkout:checkout-secret-0123456789\n');
    a = await startTestAuthz(
      etcd,
      redis,
      keys,
      {
        TRELLIS_KEY_PUBLISH_LEAD_SECONDS: '1',
        TRELLIS_TOKEN_ENDPOINT_CREDENTIALS: join(credsDir, 'callers'),
        TRELLIS_CLOUDFLARE_CERTS_URL_TEMPLATE: team.certsUrlTemplate,
      },
      { edge: { cooldownMs: 0 } },
    );
  }, 120_000);

  afterAll(async () => {
    await a?.stop();
    await Promise.all([
      etcd?.close(),
      redis?.close(),
      keys?.remove(),
      team?.close(),
      credsDir && rm(credsDir, { recursive: true, force: true }),
    ]);
  });

  describe('east-west, outbound at the caller', () => {
    it('allows a declared pair with an A→B token that verifies against the JWKS', async () => {
      const response = await a.check(outbound('checkout', 'orders'));
      expect(response.status?.code).toBe(status.OK);
      const token = bearer(okHeaders(response));
      const { payload, protectedHeader } = await jwtVerify(token, await jwks(), {
        issuer: 'trellis',
        audience: 'orders',
        algorithms: ['RS256'],
      });
      expect(payload.sub).toBe('checkout');
      expect(payload.exp! - payload.iat!).toBe(900);
      expect(protectedHeader.kid).toEqual(expect.any(String));
    });

    it('denies an undeclared pair with a reason, as a successful RPC', async () => {
      expect(deniedReason(await a.check(outbound('payments', 'orders')))).toEqual({
        code: status.PERMISSION_DENIED,
        http: 403,
        reason: 'undeclared',
      });
      expect(deniedReason(await a.check(outbound('ghost', 'orders')))).toMatchObject({ reason: 'unknown-source' });
      expect(
        await counterValue(a.authz, 'trellis_authz_checks_total', { direction: 'outbound', result: 'denied', reason: 'undeclared' }),
      ).toBe(1);
    });

    it('denies when the route carries no trusted context, whatever headers say', async () => {
      const spoofed = await a.check({
        headers: { 'x-envoy-downstream-service-cluster': 'checkout' },
        context: { 'trellis.destination': 'orders' },
      });
      expect(deniedReason(spoofed)).toMatchObject({ code: status.INVALID_ARGUMENT, reason: 'missing-context' });
    });

    it('serves the second call from the in-process cache and mints once for concurrent misses', async () => {
      await a.check(outbound('checkout', 'payments'));
      const minted = await counterValue(a.authz, 'trellis_authz_tokens_minted_total');
      const first = okHeaders(await a.check(outbound('checkout', 'payments')));
      expect(await counterValue(a.authz, 'trellis_authz_tokens_minted_total')).toBe(minted);
      expect(await counterValue(a.authz, 'trellis_authz_token_cache_total', { layer: 'memory', result: 'hit' })).toBeGreaterThanOrEqual(1);

      const burst = await Promise.all(Array.from({ length: 20 }, () => a.check(outbound('orders', 'stock'))));
      expect(new Set(burst.map((r) => okHeaders(r)['authorization'])).size).toBe(1);
      expect(await counterValue(a.authz, 'trellis_authz_tokens_minted_total')).toBe(minted + 1);
      expect(first['authorization']).toMatch(/^Bearer /);
    });

    it('a second replica takes the token from Redis instead of signing again', async () => {
      const first = okHeaders(await a.check(outbound('checkout', 'stock')));
      const replica = await startTestAuthz(etcd, redis, keys);
      try {
        await redisConnected(replica.authz);
        const second = okHeaders(await replica.check(outbound('checkout', 'stock')));
        expect(second['authorization']).toBe(first['authorization']);
        expect(await counterValue(replica.authz, 'trellis_authz_tokens_minted_total')).toBe(0);
        expect(await counterValue(replica.authz, 'trellis_authz_token_cache_total', { layer: 'redis', result: 'hit' })).toBe(1);
      } finally {
        await replica.stop();
      }
    });

    it('a memory miss whose Redis entry has been tampered with mints instead of trusting it', async () => {
      const replica = await startTestAuthz(etcd, redis, keys, { TRELLIS_REDIS_KEY_PREFIX: 'tamper:' });
      try {
        const signer = a.authz.keyRing.signer()!;
        // A token for another pair planted under this pair's key: not used.
        const planted = bearer(okHeaders(await a.check(outbound('checkout', 'orders'))));
        const { Redis } = await import('ioredis');
        const raw = new Redis(redis.url);
        await raw.set(`tamper:payments:stock:${signer.kid}`, planted, 'PX', 60_000);
        raw.disconnect();
        await store.updateService(
          { team: 'shop', protocol: 'http', port: 8080, name: 'payments', dependencies: [{ service: 'stock' }] },
          'test',
        );
        await eventually(
          'payments → stock allowed',
          async () => (await replica.check(outbound('payments', 'stock'))).status?.code === status.OK,
        );
        const token = bearer(okHeaders(await replica.check(outbound('payments', 'stock'))));
        expect(token).not.toBe(planted);
        expect((await jwtVerify(token, await jwks(), { audience: 'stock' })).payload.sub).toBe('payments');
      } finally {
        await replica.stop();
      }
    });
  });

  describe('attack: Redis cache poisoning', () => {
    it('a token planted in Redis under the signing kid but signed by another key is deleted, counted and never handed out', async () => {
      const replica = await startTestAuthz(etcd, redis, keys, { TRELLIS_REDIS_KEY_PREFIX: 'poison:' });
      const { Redis } = await import('ioredis');
      const raw = new Redis(redis.url);
      try {
        const signer = replica.authz.keyRing.signer()!;
        const { generateKeyPair, SignJWT } = await import('jose');
        const attacker = await generateKeyPair('RS256');
        const now = Math.floor(Date.now() / 1000);
        const forged = await new SignJWT({})
          .setProtectedHeader({ alg: 'RS256', kid: signer.kid, typ: 'JWT' })
          .setIssuer('trellis')
          .setSubject('checkout')
          .setAudience('stock')
          .setIssuedAt(now)
          .setExpirationTime(now + 900)
          .sign(attacker.privateKey);
        const redisKey = `poison:checkout:stock:${signer.kid}`;
        await raw.set(redisKey, forged, 'PX', 600_000);
        await redisConnected(replica.authz);

        const token = bearer(okHeaders(await replica.check(outbound('checkout', 'stock'))));
        expect(token).not.toBe(forged);
        expect((await jwtVerify(token, await jwks(), { audience: 'stock' })).payload.sub).toBe('checkout');
        expect(await counterValue(replica.authz, 'trellis_authz_token_cache_total', { layer: 'redis', result: 'rejected' })).toBe(1);
        // The forged entry is gone (replaced by the token authz minted), and memory never held it.
        await eventually('the forged entry replaced', async () => (await raw.get(redisKey)) !== forged);
        await raw.del(redisKey);
        expect(bearer(okHeaders(await replica.check(outbound('checkout', 'stock'))))).toBe(token);
      } finally {
        raw.disconnect();
        await replica.stop();
      }
    });
  });

  describe('attack: Redis cache poisoning with genuine tokens of authz (a Redis writer replays what it saw)', () => {
    // Each is signed by authz's own key, so only its claims can give it away.
    const plants: [string, () => Promise<string>][] = [
      ['checkout→orders (another audience)', async () => bearer(okHeaders(await a.check(outbound('checkout', 'orders'))))],
      ['orders→stock (another caller)', async () => bearer(okHeaders(await a.check(outbound('orders', 'stock'))))],
      ["checkout's xDS token (aud trellis-xds)", () => signedByAuthz(XDS_TOKEN_AUDIENCE, Date.now())],
      ['checkout→stock, expired an hour ago', () => signedByAuthz('stock', Date.now() - 3_600_000)],
    ];
    /** What authz itself signs for checkout (the xDS token endpoint's or an old pair token), as a replayed copy. */
    const signedByAuthz = async (audience: string, at: number) =>
      (await mintMeshToken(a.authz.keyRing.signer()!, { issuer: 'trellis', subject: 'checkout', audience, ttlSeconds: 900 }, at)).token;
    it.each(plants)('planted under checkout→stock: %s is deleted, counted and never handed out', async (_what, plant) => {
      const prefix = `replay-${createHash('sha256').update(_what).digest('hex').slice(0, 8)}:`;
      const replica = await startTestAuthz(etcd, redis, keys, { TRELLIS_REDIS_KEY_PREFIX: prefix });
      const { Redis } = await import('ioredis');
      const raw = new Redis(redis.url);
      try {
        const planted = await plant();
        const redisKey = `${prefix}checkout:stock:${replica.authz.keyRing.signer()!.kid}`;
        await raw.set(redisKey, planted, 'PX', 600_000);
        await redisConnected(replica.authz);
        const token = bearer(okHeaders(await replica.check(outbound('checkout', 'stock'))));
        expect(token).not.toBe(planted);
        const { payload } = await jwtVerify(token, await jwks(), { issuer: 'trellis', audience: 'stock' });
        expect(payload.sub).toBe('checkout');
        expect(await counterValue(replica.authz, 'trellis_authz_token_cache_total', { layer: 'redis', result: 'rejected' })).toBe(1);
        await eventually('the planted entry replaced', async () => (await raw.get(redisKey)) !== planted);
      } finally {
        raw.disconnect();
        await replica.stop();
      }
    });
  });

  describe('Redis with an ACL user', () => {
    it('works with exactly the ACL docs/security.md gives: a poisoned entry is deleted, the breaker can probe, no command refused', async () => {
      // The permissions as documented (the key pattern aside), so the documentation cannot drift from what authz runs.
      const documented = /`ACL SETUSER trellis-authz on >… ~trellis:authz:\* ([^`]+)`/.exec(
        await readFile(join(__dirname, '../../../docs/security.md'), 'utf8'),
      );
      expect(documented).not.toBeNull();
      const { Redis } = await import('ioredis');
      const raw = new Redis(redis.url);
      const user = `trellis-authz-doc-${process.pid}`;
      const passwordFile = join(credsDir, 'redis-password-doc');
      await writeFile(passwordFile, 'doc-acl-secret-0123456789\n');
      await raw.call('ACL', 'SETUSER', user, 'on', '>doc-acl-secret-0123456789', '~docacl:*', ...documented![1]!.split(/\s+/));
      const replica = await startTestAuthz(etcd, redis, keys, {
        TRELLIS_REDIS_USERNAME: user,
        TRELLIS_REDIS_PASSWORD_FILE: passwordFile,
        TRELLIS_REDIS_KEY_PREFIX: 'docacl:',
      });
      try {
        await redisConnected(replica.authz);
        const redisKey = `docacl:checkout:stock:${replica.authz.keyRing.signer()!.kid}`;
        await raw.set(redisKey, 'planted.by.attacker', 'PX', 600_000);
        expect((await replica.check(outbound('checkout', 'stock'))).status?.code).toBe(status.OK);
        await eventually('the planted entry replaced', async () => (await raw.get(redisKey)) !== 'planted.by.attacker');
        expect(await counterValue(replica.authz, 'trellis_authz_token_cache_total', { layer: 'redis', result: 'rejected' })).toBe(1);
        // The compare-and-delete script and the breaker's PING both ran as that user.
        await expect(replica.authz.redis.ping()).resolves.toBe('PONG');
        expect(await counterValue(replica.authz, 'trellis_authz_redis_errors_total')).toBe(0);
      } finally {
        await replica.stop();
        await raw.call('ACL', 'DELUSER', user);
        raw.disconnect();
      }
    });

    it('authenticates as the configured ACL user (password from a file); wrong credentials cost Redis, never a decision', async () => {
      const { Redis } = await import('ioredis');
      const raw = new Redis(redis.url);
      const user = `trellis-authz-${process.pid}`;
      const passwordFile = join(credsDir, 'redis-password');
      await writeFile(passwordFile, 'acl-secret-0123456789\n');
      await raw.call('ACL', 'SETUSER', user, 'on', '>acl-secret-0123456789', '~acl:*', '+@all');
      const url = new URL(redis.url);
      const env = { TRELLIS_REDIS_USERNAME: user, TRELLIS_REDIS_PASSWORD_FILE: passwordFile, TRELLIS_REDIS_KEY_PREFIX: 'acl:' };
      const good = await startTestAuthz(etcd, redis, keys, env);
      try {
        await redisConnected(good.authz);
        expect((await good.check(outbound('checkout', 'payments'))).status?.code).toBe(status.OK);
        const kid = good.authz.keyRing.signer()!.kid;
        await eventually('the ACL entry cached in Redis', async () => (await raw.get(`acl:checkout:payments:${kid}`)) !== null);
      } finally {
        await good.stop();
      }
      await writeFile(passwordFile, 'wrong-password\n');
      const bad = await startTestAuthz(etcd, redis, keys, { ...env, TRELLIS_REDIS_URL: url.toString() });
      try {
        expect((await bad.check(outbound('checkout', 'stock'))).status?.code).toBe(status.OK);
        expect(await counterValue(bad.authz, 'trellis_authz_redis_errors_total')).toBeGreaterThan(0);
      } finally {
        await bad.stop();
        await raw.call('ACL', 'DELUSER', user);
        raw.disconnect();
      }
    });
    // A password rotation as an operator does it: the ACL user takes the new password (here the old one is dropped at
    // once), the file is rewritten, SIGHUP (reloadFiles) reads it; the connection is then cut, and authz's reconnect
    // authenticates with the new password, no restart.
    it('follows a rotated TRELLIS_REDIS_PASSWORD_FILE from the next reconnect, without a restart', async () => {
      const { Redis } = await import('ioredis');
      const raw = new Redis(redis.url);
      const user = `trellis-authz-rotate-${process.pid}`;
      const passwordFile = join(credsDir, 'redis-password-rotate');
      await writeFile(passwordFile, 'old-acl-secret-0123456789\n');
      await raw.call('ACL', 'SETUSER', user, 'on', '>old-acl-secret-0123456789', '~rotate:*', '+@all');
      const replica = await startTestAuthz(etcd, redis, keys, {
        TRELLIS_REDIS_USERNAME: user,
        TRELLIS_REDIS_PASSWORD_FILE: passwordFile,
        TRELLIS_REDIS_KEY_PREFIX: 'rotate:',
      });
      try {
        await redisConnected(replica.authz);
        await raw.call('ACL', 'SETUSER', user, 'resetpass', '>new-acl-secret-0123456789');
        await writeFile(passwordFile, 'new-acl-secret-0123456789\n');
        await replica.authz.reloadFiles();
        expect(await counterValue(replica.authz, 'trellis_authz_redis_files_reloads_total', { result: 'changed' })).toBe(1);

        await raw.call('CLIENT', 'KILL', 'USER', user);
        await eventually('authz reconnected to Redis as its user, with the new password', async () =>
          replica.authz.redis.call('ACL', 'WHOAMI').then(
            (whoami) => (whoami === user ? true : undefined),
            () => undefined,
          ),
        );
        expect(await counterValue(replica.authz, 'trellis_authz_redis_files_reloads_total', { result: 'error' })).toBe(0);
      } finally {
        await replica.stop();
        await raw.call('ACL', 'DELUSER', user);
        raw.disconnect();
      }
    });
  });

  describe('Redis over TLS (rediss://)', () => {
    let tlsDir: string;
    let tlsRedis: TestRedis;
    let otherRoot: string;
    beforeAll(async () => {
      tlsDir = await mkdtemp(join(tmpdir(), 'authz-redis-tls-'));
      const root = await generateRootCa({ commonName: 'redis roots' });
      const server = await issueServerCertificate(root, { commonName: 'redis', ipAddresses: ['127.0.0.1'] });
      otherRoot = (await generateRootCa({ commonName: 'someone else' })).certificatePem;
      await writeFile(join(tlsDir, 'ca.crt'), root.certificatePem);
      await writeFile(join(tlsDir, 'other-ca.crt'), otherRoot);
      await writeFile(join(tlsDir, 'tls.crt'), server.certificatePem);
      await writeFile(join(tlsDir, 'tls.key'), server.keyPem, { mode: 0o600 });
      tlsRedis = await startRedis({
        tls: { certFile: join(tlsDir, 'tls.crt'), keyFile: join(tlsDir, 'tls.key'), caFile: join(tlsDir, 'ca.crt') },
      });
    }, 60_000);
    afterAll(async () => {
      await tlsRedis?.close();
      if (tlsDir) await rm(tlsDir, { recursive: true, force: true });
    });

    it('shares tokens over TLS, verifying the server against TRELLIS_REDIS_TLS_CA_FILE', async () => {
      const replica = await startTestAuthz(etcd, tlsRedis, keys, {
        TRELLIS_REDIS_URL: tlsRedis.tlsUrl!,
        TRELLIS_REDIS_TLS_CA_FILE: join(tlsDir, 'ca.crt'),
      });
      const { Redis } = await import('ioredis');
      const raw = new Redis(tlsRedis.url);
      try {
        await redisConnected(replica.authz);
        expect((await replica.check(outbound('checkout', 'orders'))).status?.code).toBe(status.OK);
        const kid = replica.authz.keyRing.signer()!.kid;
        await eventually('one cached entry for checkout → orders', async () => (await raw.keys(`*checkout:orders:${kid}`)).length === 1);
      } finally {
        raw.disconnect();
        await replica.stop();
      }
    });

    it('attack: a Redis whose certificate does not chain to the configured roots (an impostor) gets nothing; decisions go on', async () => {
      const replica = await startTestAuthz(etcd, tlsRedis, keys, {
        TRELLIS_REDIS_URL: tlsRedis.tlsUrl!,
        TRELLIS_REDIS_TLS_CA_FILE: join(tlsDir, 'other-ca.crt'),
        TRELLIS_REDIS_KEY_PREFIX: 'impostor:',
      });
      const { Redis } = await import('ioredis');
      const raw = new Redis(tlsRedis.url);
      try {
        expect((await replica.check(outbound('checkout', 'payments'))).status?.code).toBe(status.OK);
        await eventually('a Redis error counted', async () => (await counterValue(replica.authz, 'trellis_authz_redis_errors_total')) > 0);
        expect(await raw.keys('impostor:*')).toEqual([]);
      } finally {
        raw.disconnect();
        await replica.stop();
      }
    });
  });

  describe('Redis failure', () => {
    it('keeps answering while Redis is down, and says so in metrics', async () => {
      if (!redis.canRestart) return;
      await a.check(outbound('checkout', 'orders')); // cached in memory
      await redis.stop();
      try {
        for (const pair of [
          ['checkout', 'orders'],
          ['orders', 'stock'],
          ['checkout', 'payments'],
        ] as const) {
          // How fast is a benchmark question (tools/bench); here: answered, from memory or minted locally.
          expect((await a.check(outbound(pair[0], pair[1]))).status?.code).toBe(status.OK);
        }
        // A pair never cached: Redis is consulted, fails fast, authz mints locally.
        await store.updateService(
          { team: 'shop', protocol: 'http', port: 8080, name: 'stock', dependencies: [{ service: 'payments' }] },
          'test',
        );
        await eventually('stock → payments allowed', async () => (await a.check(outbound('stock', 'payments'))).status?.code === status.OK);
        const fresh = await a.check(outbound('stock', 'payments'));
        expect(fresh.status?.code).toBe(status.OK);
        expect(await counterValue(a.authz, 'trellis_authz_redis_errors_total')).toBeGreaterThan(0);
        // Undeclared pairs stay denied: the decision never depends on Redis.
        expect(deniedReason(await a.check(outbound('payments', 'orders'))).reason).toBe('undeclared');
      } finally {
        await redis.start();
      }
    });
  });

  describe('inbound validation at the callee', () => {
    it('accepts a mesh token for this destination from a declared caller, and names the caller', async () => {
      const token = bearer(okHeaders(await a.check(outbound('checkout', 'orders'))));
      const response = await a.check({
        context: { 'trellis.direction': 'inbound', 'trellis.destination': 'orders' },
        headers: { authorization: `Bearer ${token}` },
      });
      expect(okHeaders(response)).toEqual({ 'x-trellis-caller': 'checkout' });
    });

    it('attack: a key with e = 1 written into etcd is dropped, so the "signature" it makes of any token is refused', async () => {
      // With e = 1, s^e mod n = s: the PKCS#1 v1.5 encoding of the hash is its own signature.
      const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const jwk = { ...publicKey.export({ format: 'jwk' }), e: 'AQ' };
      const kid = 'attacker-e1';
      const now = Math.floor(Date.now() / 1000);
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      const signingInput = `${encode({ alg: 'RS256', kid, typ: 'JWT' })}.${encode({ iss: 'trellis', sub: 'checkout', aud: 'orders', iat: now, exp: now + 600 })}`;
      const digestInfo = Buffer.concat([
        Buffer.from('3031300d060960864801650304020105000420', 'hex'),
        createHash('sha256').update(signingInput).digest(),
      ]);
      const encoded = Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(256 - 3 - digestInfo.length, 0xff), Buffer.from([0]), digestInfo]);
      const forged = `${signingInput}.${encoded.toString('base64url')}`;
      // The forgery is real: a verifier that trusts the key accepts it.
      const e1Key = createPublicKey({ key: jwk, format: 'jwk' });
      expect(verify('sha256', Buffer.from(signingInput), e1Key, encoded)).toBe(true);

      const dropped = await counterValue(a.authz, 'trellis_authz_records_dropped_total', { kind: 'authzKey' });
      const at = new Date(Date.now() - 60_000).toISOString();
      const record = { kid, jwk: { kty: 'RSA', kid, alg: 'RS256', use: 'sig', n: jwk.n, e: 'AQ' }, publishedAt: at, activeFrom: at };
      await etcd.client().put(new KeyLayout(etcd.prefix).authzKey(kid)).value(JSON.stringify(record));
      await eventually(
        'the bad key record dropped',
        async () => (await counterValue(a.authz, 'trellis_authz_records_dropped_total', { kind: 'authzKey' })) > dropped,
      );
      const response = await a.check({
        context: { 'trellis.direction': 'inbound', 'trellis.destination': 'orders' },
        headers: { authorization: `Bearer ${forged}` },
      });
      expect(deniedReason(response)).toMatchObject({ http: 401, reason: 'token-unknown-kid' });
      expect(await store.listAuthzKeys()).not.toContainEqual(expect.objectContaining({ kid }));
    });

    it('rejects a token for another destination, a missing token and garbage', async () => {
      const token = bearer(okHeaders(await a.check(outbound('checkout', 'orders'))));
      const inbound = (authorization?: string) =>
        a.check({
          context: { 'trellis.direction': 'inbound', 'trellis.destination': 'payments' },
          headers: authorization ? { authorization } : {},
        });
      expect(deniedReason(await inbound(`Bearer ${token}`))).toEqual({
        code: status.UNAUTHENTICATED,
        http: 401,
        reason: 'token-wrong-audience',
      });
      expect(deniedReason(await inbound())).toMatchObject({ reason: 'token-missing' });
      expect(deniedReason(await inbound('Bearer a.b.c'))).toMatchObject({ reason: 'token-malformed' });
    });
  });

  describe('north-south at the edge', () => {
    // As Contour sends it: the HTTPProxy's authPolicy.context names the service it routes to.
    const edge = (path: string, headers: Record<string, string> = {}, destination = path.startsWith('/admin') ? 'admin' : 'web') =>
      a.check({
        context: { 'trellis.direction': 'edge', 'trellis.destination': destination },
        host: 'shop.example.com',
        path,
        headers: { ...headers, 'x-trellis-access-email': 'forged@example.com' },
      });

    it('passes the Access identity upstream for a valid Cloudflare Access JWT, from the header or the cookie', async () => {
      const token = await team.sign(ACCESS_AUD, { email: 'ada@example.com' });
      const viaHeader = await edge('/admin/users', { 'cf-access-jwt-assertion': token });
      expect(okHeaders(viaHeader)).toEqual({ 'x-trellis-access-email': 'ada@example.com' });
      const viaCookie = await edge('/admin', { cookie: `CF_Authorization=${await team.sign(ACCESS_AUD, { commonName: 'ci.access' })}` });
      expect(okHeaders(viaCookie)).toEqual({ 'x-trellis-access-service-token': 'ci.access' });
      expect(viaCookie.httpResponse?.$case === 'okResponse' && viaCookie.httpResponse.value.headersToRemove).toEqual([
        'x-trellis-access-email',
      ]);
    });

    it('denies a missing or misdirected Access JWT and follows a key rotation at the team', async () => {
      expect(deniedReason(await edge('/admin'))).toMatchObject({ http: 401, reason: 'access-missing' });
      expect(deniedReason(await edge('/admin', { 'cf-access-jwt-assertion': await team.sign('b2'.repeat(16)) }))).toMatchObject({
        reason: 'access-wrong-audience',
      });
      const kid = await team.rotate({ dropOld: true });
      expect((await edge('/admin', { 'cf-access-jwt-assertion': await team.sign(ACCESS_AUD, { kid }) })).status?.code).toBe(status.OK);
    });

    it.each([
      ['without exp', { omitExp: true }, 'access-malformed'],
      ['issued 10 years in the future', { issuedInSeconds: 10 * 365 * 86_400 }, 'access-not-yet-valid'],
      ['valid for 100 years', { expiresInSeconds: 100 * 365 * 86_400 }, 'access-invalid-claims'],
      ['whose email carries CR/LF (a header injection)', { email: 'ada@example.com\r\nx-trellis-caller: admin' }, 'access-invalid-claims'],
      ['whose email carries a NUL', { email: 'ada@example.com\u0000' }, 'access-invalid-claims'],
      ['whose service token id carries a line break', { commonName: 'ci.access\nx: y' }, 'access-invalid-claims'],
    ])('attack (#12 point 5): refuses a validly signed Access JWT %s', async (_what, opts, reason) => {
      const token = await team.sign(ACCESS_AUD, opts);
      expect(deniedReason(await edge('/admin/users', { 'cf-access-jwt-assertion': token }))).toMatchObject({ http: 401, reason });
    });

    // A team whose certs endpoint is compromised or spoofed serves a key every token "verifies" against (e = 1 makes
    // the signature the padded hash) or a weak one; jose alone checks only the modulus length (it refuses to sign or verify below 2,048 bits).
    it.each([
      ['an RSA key with e = 3', { modulusLength: 2048, publicExponent: 3 }],
      ['an RSA key with e = 17', { modulusLength: 2048, publicExponent: 17 }],
    ])('attack (#12 point 3): the team certs serve %s; a token it signs is refused', async (_what, rsa) => {
      const kid = await team.rotate({ rsa });
      const token = await team.sign(ACCESS_AUD, { kid });
      expect(deniedReason(await edge('/admin/users', { 'cf-access-jwt-assertion': token }))).toMatchObject({
        http: 401,
        reason: 'access-weak-key',
      });
      await team.rotate({ dropOld: true });
    });

    it('lets public ingress routes through with forged identity headers removed, and denies services without an ingress', async () => {
      const response = await edge('/shop');
      expect(response.status?.code).toBe(status.OK);
      expect(response.httpResponse?.$case === 'okResponse' && response.httpResponse.value.headersToRemove).toEqual([
        'x-trellis-access-email',
        'x-trellis-access-service-token',
      ]);
      expect(deniedReason(await edge('/', {}, 'orders'))).toMatchObject({ http: 403, reason: 'no-ingress' });
    });

    it('attack: a same-host ingress without Access that sorts first does not open the Access-protected route', async () => {
      // The old resolver took the longest matching prefix across services and broke ties by name.
      await store.createService(
        { team: 'shop', protocol: 'http', port: 8080, name: 'aaa-hijack', ingress: { host: 'shop.example.com', pathPrefix: '/admin' } },
        'test',
      );
      await eventually(
        'the aaa-hijack ingress route allowed',
        async () => (await edge('/admin/x', {}, 'aaa-hijack')).status?.code === status.OK,
      );
      expect(deniedReason(await edge('/admin/users'))).toMatchObject({ http: 401, reason: 'access-missing' });
      // A route that names no destination is not guessed from host and path.
      const unnamed = await a.check({ context: { 'trellis.direction': 'edge' }, host: 'shop.example.com', path: '/admin' });
      expect(deniedReason(unnamed)).toMatchObject({ http: 403, reason: 'missing-context' });
    });

    it.each(['//admin', '/%61dmin', '/./admin', '/admin;x', '/x/../admin', '/admin%2fusers'])(
      'attack: the path %s, which Envoy would route differently from how it reads, is refused',
      async (path) => {
        expect(deniedReason(await edge(path, {}, 'web'))).toMatchObject({ http: 403, reason: 'non-canonical-path' });
      },
    );

    it("at a public service's own sidecar, takes the ingress the route names, whatever the host", async () => {
      const atSidecar = (destination: string, headers: Record<string, string> = {}) =>
        a.check({
          context: { 'trellis.direction': 'edge', 'trellis.destination': destination },
          host: 'admin.internal:8080',
          path: '/',
          headers,
        });
      expect(deniedReason(await atSidecar('admin'))).toMatchObject({ reason: 'access-missing' });
      expect((await atSidecar('admin', { 'cf-access-jwt-assertion': await team.sign(ACCESS_AUD) })).status?.code).toBe(status.OK);
      expect(deniedReason(await atSidecar('orders'))).toMatchObject({ reason: 'no-ingress' });
    });
  });

  describe('records written around the registry', () => {
    const writer = () => etcd.client();
    const layout = () => new KeyLayout(etcd.prefix);
    const stored = (name: string, spec: Record<string, unknown>) =>
      JSON.stringify({
        spec: { team: 'shop', description: '', protocol: 'http', port: 8080, dependencies: [], policy: {}, name, ...spec },
        generation: 1,
        created: { actor: 't', at: new Date().toISOString() },
        updated: { actor: 't', at: new Date().toISOString() },
      });

    it('keeps serving when a service names the Access team domain "m.3", and counts what it dropped', async () => {
      const client = writer();
      const before = await counterValue(a.authz, 'trellis_authz_records_dropped_total', { kind: 'service' });
      try {
        await client
          .put(layout().service('poison'))
          .value(
            stored('poison', { ingress: { host: 'poison.example.com', cloudflareAccess: { teamDomain: 'm.3', audience: ACCESS_AUD } } }),
          );
        await client.put(layout().service('garbage')).value('{"spec":');
        await eventually(
          'authz to count the two poison records',
          async () => (await counterValue(a.authz, 'trellis_authz_records_dropped_total', { kind: 'service' })) >= before + 2,
        );
        // Still serving: the mesh Check, the edge Check for other hosts, readiness.
        expect((await a.check(outbound('checkout', 'orders'))).status?.code).toBe(status.OK);
        const edge = await a.check({
          context: { 'trellis.direction': 'edge', 'trellis.destination': 'poison' },
          host: 'poison.example.com',
          path: '/',
        });
        expect(deniedReason(edge)).toMatchObject({ http: 403, reason: 'no-ingress' });
        expect((await http('/readyz')).status).toBe(200);
      } finally {
        await client.delete().key(layout().service('poison'));
        await client.delete().key(layout().service('garbage'));
        client.close();
      }
    });
  });

  describe('POST /v1/token for callers outside Envoy', () => {
    const basic = (secret: string) => `Basic ${Buffer.from(`checkout:${secret}`).toString('base64')}`;
    const request = (body: unknown, secret = 'checkout-secret-0123456789') =>
      http('/v1/token', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: basic(secret) },
        body: JSON.stringify(body),
      });

    it('issues a token to an authenticated caller for a declared dependency', async () => {
      const res = await request({ audience: 'payments' });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { token: string; tokenType: string; expiresIn: number };
      expect(body.tokenType).toBe('Bearer');
      expect(body.expiresIn).toBeGreaterThan(800);
      expect((await jwtVerify(body.token, await jwks(), { issuer: 'trellis', audience: 'payments' })).payload.sub).toBe('checkout');
    });

    it('issues the caller its own xDS token without a dependency check, each one fresh', async () => {
      const before = await counterValue(a.authz, 'trellis_authz_token_endpoint_requests_total', { result: 'xds-ok' });
      const res = await request({ audience: XDS_TOKEN_AUDIENCE });
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('no-store');
      const body = (await res.json()) as { token: string; tokenType: string; expiresIn: number };
      expect(body.tokenType).toBe('Bearer');
      expect(body.expiresIn).toBeGreaterThan(890);
      // What the control plane checks: published key, mesh issuer, aud trellis-xds, sub = the caller.
      const { payload, protectedHeader } = await jwtVerify(body.token, await jwks(), {
        issuer: 'trellis',
        audience: XDS_TOKEN_AUDIENCE,
        algorithms: ['RS256', 'ES256'],
      });
      expect(payload.sub).toBe('checkout');
      expect((await store.listAuthzKeys()).map((k) => k.kid)).toContain(protectedHeader.kid);
      // Lifetime = the mesh tokens' (TRELLIS_TOKEN_TTL_SECONDS), which key retirement is computed from.
      const mesh = (await (await request({ audience: 'payments' })).json()) as { token: string };
      const meshClaims = (await jwtVerify(mesh.token, await jwks(), { audience: 'payments' })).payload;
      expect(payload.exp! - payload.iat!).toBe(meshClaims.exp! - meshClaims.iat!);
      // Not the pair cache: a second request is a new token with its own full lifetime.
      const again = (await (await request({ audience: XDS_TOKEN_AUDIENCE })).json()) as { token: string };
      expect(again.token).not.toBe(body.token);
      expect(await counterValue(a.authz, 'trellis_authz_token_endpoint_requests_total', { result: 'xds-ok' })).toBe(before + 2);
      expect(await counterValue(a.authz, 'trellis_authz_tokens_minted_total', { kind: 'xds' })).toBeGreaterThanOrEqual(2);
    });

    it('refuses an xDS token to a caller without the service credential', async () => {
      const res = await request({ audience: XDS_TOKEN_AUDIENCE }, 'wrong-secret-00000000');
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    });

    it('answers problem+json naming what is wrong', async () => {
      const unauthenticated = await request({ audience: 'payments' }, 'wrong-secret-00000000');
      expect(unauthenticated.status).toBe(401);
      expect(unauthenticated.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(unauthenticated.headers.get('www-authenticate')).toMatch(/^Basic/);
      const invalid = await request({ audience: 'Not A Service' });
      expect(invalid.status).toBe(400);
      expect(await invalid.json()).toMatchObject({ type: 'https://trellis.dev/problems/validation', errors: [{ field: 'audience' }] });
      const forbidden = await request({ audience: 'web' });
      expect(forbidden.status).toBe(403);
      expect(await forbidden.json()).toMatchObject({ reason: 'undeclared' });
    });
  });

  describe('ops', () => {
    it('answers /healthz, /readyz and /metrics with trellis_authz_* series', async () => {
      expect((await http('/healthz')).status).toBe(200);
      const ready = await http('/readyz');
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ checks: { registry: true, signingKey: true } });
      const metrics = await (await http('/metrics')).text();
      for (const name of [
        'trellis_authz_checks_total',
        'trellis_authz_check_duration_seconds_bucket',
        'trellis_authz_token_cache_total',
        'trellis_authz_tokens_minted_total',
        'trellis_authz_redis_errors_total',
      ]) {
        expect(metrics).toContain(name);
      }
      expect(metrics).not.toMatch(/checkout|orders/); // no label per service or subject
    });

    it('answers the standard gRPC health check for the Authorization service', async () => {
      const Health = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');
      const client = new Health(`127.0.0.1:${a.authz.grpcPort}`, credentials.createInsecure()) as unknown as {
        Check(req: { service: string }, cb: (err: Error | null, res: { status: string }) => void): void;
        close(): void;
      };
      const check = (service: string) =>
        new Promise<string>((resolve, reject) => client.Check({ service }, (err, res) => (err ? reject(err) : resolve(res.status))));
      try {
        expect(await check('envoy.service.auth.v3.Authorization')).toBe('SERVING');
        expect(await check('')).toBe('SERVING');
      } finally {
        client.close();
      }
    });
  });

  describe('attack: slow loris against the HTTP port (#12 point 9)', () => {
    it.each(['headers', 'body'] as const)(
      'closes 400 sockets trickling their %s, and keeps serving',
      async (mode) => {
        const replica = await startTestAuthz(etcd, redis, keys, {
          TRELLIS_HTTP_HEADERS_TIMEOUT_MS: '1000',
          TRELLIS_HTTP_REQUEST_TIMEOUT_MS: '2000',
        });
        // The token endpoint reads the JSON body before anything else.
        const loris = await startSlowLoris({
          port: replica.authz.httpPort,
          sockets: 400,
          mode,
          path: '/v1/token',
          contentType: 'application/json',
        });
        try {
          await loris.allClosed(60_000);
          expect(loris.replies).toContain('HTTP/1.1 408 Request Timeout');
          expect(loris.replies.filter((line) => line !== '').every((line) => line.startsWith('HTTP/1.1 408'))).toBe(true);
          expect((await fetch(`http://127.0.0.1:${replica.authz.httpPort}/healthz`)).status).toBe(200);
        } finally {
          loris.stop();
          await replica.stop();
        }
      },
      90_000,
    );
  });

  describe('shutdown', () => {
    it('reports not ready first, then stops serving and closes cleanly', async () => {
      const replica = await startTestAuthz(etcd, redis, keys);
      const readyz = () => fetch(`http://127.0.0.1:${replica.authz.httpPort}/readyz`).then((r) => r.status);
      expect(await readyz()).toBe(200);
      replica.authz.health.startDraining();
      expect(await readyz()).toBe(503);
      // Still deciding while draining: Envoy moves away on its own schedule.
      expect((await replica.check(outbound('checkout', 'orders'))).status?.code).toBe(status.OK);
      await replica.stop();
      await expect(readyz()).rejects.toThrow();
    });
  });

  describe('etcd failure', () => {
    it('keeps deciding from the last snapshot while etcd is down and follows changes after it is back', async () => {
      if (!etcd.canRestart) return;
      await etcd.stop();
      try {
        expect((await a.check(outbound('checkout', 'orders'))).status?.code).toBe(status.OK);
        expect(deniedReason(await a.check(outbound('payments', 'orders'))).reason).toBe('undeclared');
        // A key reload cannot reach etcd: it keeps the current keys and says so; signing goes on.
        await expect(a.authz.reloadKeys()).rejects.toThrow();
        expect(a.authz.keyRing.signer()).toBeDefined();
      } finally {
        await etcd.start();
      }
      await store.updateService(
        { team: 'shop', protocol: 'http', port: 8080, name: 'payments', dependencies: [{ service: 'stock' }, { service: 'orders' }] },
        'test',
      );
      await eventually('payments → orders allowed', async () => (await a.check(outbound('payments', 'orders'))).status?.code === status.OK);
    }, 120_000);
  });

  // Last: it changes which key signs.
  describe('key rotation', () => {
    it('publishes the new key before it signs; old tokens stay valid; new tokens use the new key', async () => {
      const oldKid = a.authz.keyRing.signer()!.kid;
      const oldToken = bearer(okHeaders(await a.check(outbound('checkout', 'orders'))));

      await keys.addKey('second');
      await a.authz.reloadKeys();
      const published = await store.listAuthzKeys();
      expect(published).toHaveLength(2);
      const newKid = published.find((k) => k.kid !== oldKid)!.kid;
      // Published (etcd and JWKS) but not yet signing.
      const served = (await (await http('/.well-known/jwks.json')).json()) as JSONWebKeySet;
      expect(served.keys.map((k) => k.kid).sort()).toEqual([oldKid, newKid].sort());
      expect(decodeProtectedHeader(bearer(okHeaders(await a.check(outbound('checkout', 'payments'))))).kid).toBe(oldKid);

      // After the lead time the new key signs (a new cache entry: the cache is keyed by kid).
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const newToken = bearer(okHeaders(await a.check(outbound('checkout', 'orders'))));
      expect(decodeProtectedHeader(newToken).kid).toBe(newKid);

      // The old key is retiring, not gone: tokens it signed verify until they expired.
      await a.authz.reloadKeys();
      const old = (await store.listAuthzKeys()).find((k) => k.kid === oldKid)!;
      expect(Date.parse(old.retireAfter!)).toBeGreaterThanOrEqual(Date.parse(old.activeFrom) + 900_000);
      for (const token of [oldToken, newToken]) {
        const inbound = await a.check({
          context: { 'trellis.direction': 'inbound', 'trellis.destination': 'orders' },
          headers: { authorization: `Bearer ${token}` },
        });
        expect(inbound.status?.code).toBe(status.OK);
        await expect(jwtVerify(token, await jwks(), { audience: 'orders' })).resolves.toBeDefined();
      }
    });
  });
});
