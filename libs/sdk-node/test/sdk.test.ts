// The SDK against real servers on loopback: a real grpc-js server and client with
// the interceptors, and an HTTP server that plays authz's token endpoint and JWKS
// (signing with jose exactly as authz does).
import { credentials, makeGenericClientConstructor, Metadata, Server, ServerCredentials, status, type ServiceError } from '@grpc/grpc-js';
import { HealthImplementation, service as healthService } from 'grpc-health-check';
import { CallReply, HopClient, HopService, type CallRequest } from '@trellis/envoy-types/trellis/demo/v1/hop';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import { join } from 'node:path';
import { build } from 'esbuild';
import { eventually } from '@trellis/testing';
import type { AddressInfo } from 'node:net';
import {
  CALLER_METADATA_KEY,
  currentCallTrace,
  meshServerInterceptor,
  meshTokenInterceptor,
  MeshTokenClient,
  MeshTokenError,
  MeshTokenVerifier,
  traceContextInterceptor,
  traceContextServerInterceptor,
} from '../src';

const ISSUER = 'trellis-test';

interface Claims {
  sub: string;
  aud: string;
  iss?: string;
  expiresIn?: string;
  /** Seconds since the epoch. */
  issuedAt?: number;
  expiresAt?: number;
  /** Sign with the RSA key of public exponent 3 the JWKS also serves (kid weak-e3), not the good one. */
  weakKey?: boolean;
}

interface FakeAuthz {
  url: string;
  mints: number;
  sign(claims: Claims): Promise<string>;
  close(): Promise<void>;
}

async function startTokenEndpoint(declared: Record<string, string[]>, secrets: Record<string, string>): Promise<FakeAuthz> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  const weak = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 });
  const weakJwk = { ...weak.publicKey.export({ format: 'jwk' }), kid: 'weak-e3', alg: 'RS256', use: 'sig' };
  const sign = (c: Claims) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid: c.weakKey ? 'weak-e3' : 'k1' })
      .setIssuer(c.iss ?? ISSUER)
      .setSubject(c.sub)
      .setAudience(c.aud)
      .setIssuedAt(c.issuedAt)
      .setExpirationTime(c.expiresAt ?? c.expiresIn ?? '15m')
      .sign(c.weakKey ? weak.privateKey : privateKey);
  const state = { mints: 0 };
  const server: HttpServer = createServer((req, res) => {
    if (req.url === '/.well-known/jwks.json') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [jwk, weakJwk] }));
      return;
    }
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const [service, secret] = Buffer.from((req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64')
        .toString()
        .split(':');
      const { audience } = JSON.parse(body || '{}') as { audience?: string };
      if (!service || secrets[service] !== secret) return void res.writeHead(401).end();
      if (!audience || !declared[service]?.includes(audience)) return void res.writeHead(403).end('not declared');
      state.mints++;
      // Answer slowly, so concurrent getToken calls overlap.
      setTimeout(() => void sign({ sub: service, aud: audience }).then((token) => res.end(JSON.stringify({ token }))), 20);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get mints() {
      return state.mints;
    },
    sign,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('MeshTokenClient', () => {
  let authz: FakeAuthz;
  beforeAll(async () => {
    authz = await startTokenEndpoint({ a: ['b'] }, { a: 's3cret' });
  });
  afterAll(() => authz.close());

  it('fetches once for concurrent requests and serves the cached token after', async () => {
    const client = new MeshTokenClient({ authzUrl: authz.url, service: 'a', secret: 's3cret' });
    const before = authz.mints;
    const tokens = await Promise.all([client.getToken('b'), client.getToken('b'), client.getToken('b')]);
    expect(new Set(tokens).size).toBe(1);
    expect(await client.getToken('b')).toBe(tokens[0]);
    expect(authz.mints - before).toBe(1);
  });

  it('renews a token before it gets close to expiry', async () => {
    let now = Date.now();
    const client = new MeshTokenClient({ authzUrl: authz.url, service: 'a', secret: 's3cret', renewBeforeSeconds: 60, now: () => now });
    const before = authz.mints;
    const first = await client.getToken('b');
    now += 14 * 60 * 1000 + 1000; // 15-minute token, 60 s margin: renew after 14 minutes
    // Still valid: the held token is used while the renewal runs in the background.
    expect(await client.getToken('b')).toBe(first);
    await eventually('the background renewal minted', () => authz.mints - before >= 2);
    expect(authz.mints - before).toBe(2);
  });

  it('fails with the status when authz refuses an undeclared pair or a bad secret', async () => {
    await expect(new MeshTokenClient({ authzUrl: authz.url, service: 'a', secret: 's3cret' }).getToken('c')).rejects.toMatchObject({
      status: 403,
    });
    await expect(new MeshTokenClient({ authzUrl: authz.url, service: 'a', secret: 'wrong' }).getToken('b')).rejects.toBeInstanceOf(
      MeshTokenError,
    );
  });
});

describe('grpc interceptors', () => {
  let authz: FakeAuthz;
  let server: Server;
  let port: number;
  const rejections: string[] = [];
  /** The request id of the call each rejection was reported in (the trace context interceptor runs first). */
  const rejectedRequestIds: Array<string | undefined> = [];

  beforeAll(async () => {
    authz = await startTokenEndpoint({ a: ['b'], c: ['b'], x: ['z'] }, { a: 'sa', c: 'sc', x: 'sx' });
    const verifier = new MeshTokenVerifier({
      service: 'b',
      issuer: ISSUER,
      keys: `${authz.url}/.well-known/jwks.json`,
      isAllowedCaller: (caller) => caller === 'a',
    });
    server = new Server({
      interceptors: [
        traceContextServerInterceptor(),
        meshServerInterceptor(verifier, (reason) => {
          rejections.push(reason);
          rejectedRequestIds.push(currentCallTrace()?.requestId);
        }),
      ],
    });
    new HealthImplementation({ '': 'SERVING' }).addToServer(server);
    server.addService(HopService, {
      call: (call: { request: CallRequest; metadata: Metadata }, callback: (err: null, reply: CallReply) => void) => {
        callback(
          null,
          CallReply.fromPartial({
            hops: [
              { service: 'b', caller: String(call.metadata.get(CALLER_METADATA_KEY)[0] ?? ''), traceId: currentCallTrace()?.traceId ?? '' },
            ],
          }),
        );
      },
    });
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
  });
  afterAll(async () => {
    server.forceShutdown();
    await authz.close();
  });

  const call = (client: HopClient, metadata = new Metadata()) =>
    new Promise<CallReply>((resolve, reject) =>
      client.call({ origin: 'test' }, metadata, (err, reply) => (err ? reject(err) : resolve(reply!))),
    );

  it('a declared caller reaches the handler, which sees the verified caller', async () => {
    const tokens = new MeshTokenClient({ authzUrl: authz.url, service: 'a', secret: 'sa' });
    const client = new HopClient(`127.0.0.1:${port}`, credentials.createInsecure(), { interceptors: [meshTokenInterceptor(tokens, 'b')] });
    const reply = await call(client);
    expect(reply.hops[0]).toMatchObject({ service: 'b', caller: 'a' });
    client.close();
  });

  it("with the trace context interceptor first, the handler and a rejection both see the call's trace", async () => {
    const tokens = new MeshTokenClient({ authzUrl: authz.url, service: 'a', secret: 'sa' });
    const client = new HopClient(`127.0.0.1:${port}`, credentials.createInsecure(), {
      interceptors: [traceContextInterceptor(), meshTokenInterceptor(tokens, 'b')],
    });
    const reply = await call(client);
    expect(reply.hops[0]).toMatchObject({ service: 'b', caller: 'a', traceId: expect.stringMatching(/^[0-9a-f]{32}$/) });
    client.close();
    const refused = new HopClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const md = new Metadata();
    md.set('x-request-id', 'req-refused-1');
    await expect(call(refused, md)).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
    expect(rejectedRequestIds).toContain('req-refused-1');
    refused.close();
  });

  it('a call without a token is refused with UNAUTHENTICATED, and a forged caller header is ignored', async () => {
    const client = new HopClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const md = new Metadata();
    md.set(CALLER_METADATA_KEY, 'a');
    await expect(call(client, md)).rejects.toMatchObject({ code: status.UNAUTHENTICATED, details: 'missing bearer token' });
    client.close();
  });

  it('answers the standard gRPC health check without a token (the agent and kubelet probes have none)', async () => {
    const Health = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');
    const client = new Health(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as {
      Check(req: { service: string }, cb: (err: Error | null, res?: { status: string }) => void): void;
      close(): void;
    };
    const status = await new Promise<string | undefined>((resolve, reject) =>
      client.Check({ service: '' }, (err, res) => (err ? reject(err) : resolve(res?.status))),
    );
    expect(status).toBe('SERVING');
    client.close();
  });

  it('tokens for another audience, another issuer, expired ones and undeclared callers are refused', async () => {
    const client = new HopClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const withToken = (token: string) => {
      const md = new Metadata();
      md.set('authorization', `Bearer ${token}`);
      return call(client, md);
    };
    await expect(withToken(await authz.sign({ sub: 'a', aud: 'z' }))).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
    await expect(withToken(await authz.sign({ sub: 'a', aud: 'b', iss: 'elsewhere' }))).rejects.toMatchObject({
      code: status.UNAUTHENTICATED,
    });
    await expect(withToken(await authz.sign({ sub: 'a', aud: 'b', expiresIn: '-2m' }))).rejects.toMatchObject({
      code: status.UNAUTHENTICATED,
    });
    const undeclared = (await withToken(await authz.sign({ sub: 'c', aud: 'b' })).catch((e: ServiceError) => e)) as ServiceError;
    expect(undeclared.code).toBe(status.UNAUTHENTICATED);
    expect(undeclared.details).toMatch(/c has not declared b/);
    expect(rejections.length).toBeGreaterThanOrEqual(4);
    client.close();
  });

  it('the client fails closed with PERMISSION_DENIED when authz refuses the token', async () => {
    const tokens = new MeshTokenClient({ authzUrl: authz.url, service: 'x', secret: 'sx' });
    const client = new HopClient(`127.0.0.1:${port}`, credentials.createInsecure(), { interceptors: [meshTokenInterceptor(tokens, 'b')] });
    await expect(call(client)).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
    client.close();
  });
});

describe('attack: a validly signed token the serving process cannot carry (#12 point 6)', () => {
  const ROOT = join(__dirname, '../../..');
  const OUT = join(ROOT, 'node_modules/.cache/trellis-sdk-node-test/serving-process.js');
  let authz: FakeAuthz;
  let child: ChildProcess;
  let exited: { code: number | null; stderr: string } | undefined;
  let ports: { strict: number; faulty: number };

  beforeAll(async () => {
    authz = await startTokenEndpoint({}, {});
    mkdirSync(join(OUT, '..'), { recursive: true });
    await build({
      entryPoints: [join(__dirname, 'fixtures/serving-process.ts')],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      external: ['@grpc/grpc-js', 'jose', '@bufbuild/protobuf'],
      outfile: OUT,
      logLevel: 'error',
    });
    child = spawn(process.execPath, [OUT, `${authz.url}/.well-known/jwks.json`, ISSUER], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) => (exited = { code, stderr }));
    ports = await new Promise((resolve, reject) => {
      child.stdout!.once('data', (d: Buffer) => resolve(JSON.parse(d.toString()) as { strict: number; faulty: number }));
      child.once('exit', () => reject(new Error(`serving process exited before listening: ${stderr}`)));
    });
  }, 60_000);
  afterAll(async () => {
    child?.kill();
    await authz?.close();
  });

  const callWith = async (port: number, token: string) => {
    const client = new HopClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const md = new Metadata();
    md.set('authorization', `Bearer ${token}`);
    try {
      return await new Promise<CallReply>((resolve, reject) =>
        client.call({ origin: 'attack' }, md, (err, reply) => (err ? reject(err) : resolve(reply!))),
      );
    } finally {
      client.close();
    }
  };

  it('refuses a token whose sub is not a service name with UNAUTHENTICATED, and keeps serving', async () => {
    for (const sub of ['a\nb', 'a\r\nx-injected: 1', 'A', 'a b', '']) {
      const refused = (await callWith(ports.strict, await authz.sign({ sub, aud: 'b' })).catch((e: ServiceError) => e)) as ServiceError;
      expect(refused).toMatchObject({ code: status.UNAUTHENTICATED, details: 'sub must be a service name' });
    }
    const served = await callWith(ports.strict, await authz.sign({ sub: 'a', aud: 'b' }));
    expect(served.hops[0]).toMatchObject({ caller: 'a' });
    expect(exited).toBeUndefined();
  });

  it('refuses tokens claiming a future iat or a life of years (#12 point 5)', async () => {
    const now = Math.floor(Date.now() / 1000);
    for (const claims of [
      { issuedAt: now + 10 * 365 * 86_400, expiresAt: now + 10 * 365 * 86_400 + 900 },
      { issuedAt: now, expiresAt: now + 100 * 365 * 86_400 },
    ]) {
      const refused = (await callWith(ports.strict, await authz.sign({ sub: 'a', aud: 'b', ...claims })).catch(
        (e: ServiceError) => e,
      )) as ServiceError;
      expect(refused.code).toBe(status.UNAUTHENTICATED);
    }
    expect(exited).toBeUndefined();
  });

  it('attack (#12 point 3): refuses a token signed by an RSA key with e = 3 that the JWKS serves', async () => {
    const refused = (await callWith(ports.strict, await authz.sign({ sub: 'a', aud: 'b', weakKey: true })).catch(
      (e: ServiceError) => e,
    )) as ServiceError;
    expect(refused).toMatchObject({ code: status.UNAUTHENTICATED, details: expect.stringContaining('exponent') });
    expect((await callWith(ports.strict, await authz.sign({ sub: 'a', aud: 'b' }))).hops[0]).toMatchObject({ caller: 'a' });
    expect(exited).toBeUndefined();
  });

  it('turns an error thrown around the interceptor into a gRPC status, never an unhandled rejection', async () => {
    for (let i = 0; i < 3; i++) {
      const failed = (await callWith(ports.faulty, await authz.sign({ sub: 'a', aud: 'b' })).catch((e: ServiceError) => e)) as ServiceError;
      expect([status.UNAUTHENTICATED, status.INTERNAL]).toContain(failed.code);
    }
    // Still alive: the strict server in the same process answers.
    expect((await callWith(ports.strict, await authz.sign({ sub: 'a', aud: 'b' }))).hops[0]).toMatchObject({ caller: 'a' });
    expect(exited).toBeUndefined();
  });
});
