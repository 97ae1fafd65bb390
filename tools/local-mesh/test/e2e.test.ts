// End-to-end: every deployable as its own process, started exactly as `npm start`
// starts them (startLocalMesh + startDemo), with real etcd, Redis, gRPC and
// grpc-js-xds clients. Each step prints how long the mesh took to converge.
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { componentSpiffeIdOf, DEFAULT_TRUST_DOMAIN } from '@trellis/mesh-contracts';
import { spiffeServerIdentityCheck } from '@trellis/pki';
import { certificateFilesIn, MeshTokenClient, type CertificateFiles } from '@trellis/sdk-node';
import { AuthorizationClient, CheckRequest, type CheckResponse } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { AggregatedDiscoveryServiceClient } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { DiscoveryRequest, type DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { HopClient, type HopRecord } from '@trellis/envoy-types/trellis/demo/v1/hop';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { demoCertificateDir, startDemo, writeDemoCredentials, type Demo, type DemoCredentials } from '../src/demo/demo';
import { startLocalMesh, WORKSPACE_ROOT, type AppName, type LocalMesh } from '../src/mesh';
import { freePort } from '../src/ports';
import { httpOk, startProcess, waitUntil } from '../src/processes';
import { LOCAL_MESH_BUNDLES } from './build-once';

// Generous: the whole mesh starts as processes, and a loaded machine is slow, not wrong.
jest.setTimeout(300_000);

const TEAM_DOMAIN = 'trellis-demo.cloudflareaccess.com';
const ACCESS_AUD = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';

let dataDir: string;
let mesh: LocalMesh;
let demo: Demo;
let creds: DemoCredentials;
let cloudflare: { server: Server; key: CryptoKey; kid: string };
const log: string[] = [];

/** Polls `attempt` until it returns a value (not throwing); returns it with the time it took. */
async function converge<T>(what: string, attempt: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const started = Date.now();
  let last: unknown;
  while (Date.now() - started < timeoutMs) {
    try {
      const value = await attempt();
      const line = `${what}: ${Date.now() - started} ms`;
      log.push(line);
      process.stdout.write(`[e2e] ${line}\n`);
      return value;
    } catch (err) {
      last = err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(
    `${what}: not converged after ${timeoutMs} ms; last error: ${last instanceof Error ? last.message : String(last)}\n${recentOutput()}`,
  );
}

/** The last lines every process printed, for a failure message (their output is quiet otherwise). */
function recentOutput(): string {
  return [...(mesh?.processes ?? []), ...(demo?.processes ?? [])]
    .map((p) => `--- ${p.name}\n${p.recentOutput.slice(-8).join('\n')}`)
    .join('\n');
}

async function registry(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${mesh.registryUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${mesh.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
}

/** Replaces a service definition with `change` applied, honouring the ETag. */
async function editService(name: string, change: (spec: Record<string, unknown>) => Record<string, unknown>): Promise<void> {
  const current = await registry('GET', `/api/v1/services/${name}`);
  expect(current.status).toBe(200);
  const etag = current.headers.get('etag')!;
  const body = (await current.json()) as { spec?: Record<string, unknown> } & Record<string, unknown>;
  const spec = body.spec ?? body;
  const res = await registry('PUT', `/api/v1/services/${name}`, change(spec), { 'if-match': etag });
  if (!res.ok) throw new Error(`PUT ${name}: ${res.status} ${await res.text()}`);
}

/** The workload certificate files the demo instance's agent obtained from the mesh CA (its dev root). */
function instanceCertificate(instance: string): CertificateFiles {
  return certificateFilesIn(demoCertificateDir(mesh, instance));
}

/** An ext_authz Check on authz's gRPC port, as `instance`'s proxy (its certificate), or with no client certificate at all. */
function check(request: Parameters<typeof CheckRequest.fromPartial>[0], as: string | 'no certificate'): Promise<CheckResponse> {
  const trust = readFileSync(instanceCertificate('front-1').caCertificateFile);
  const own = as === 'no certificate' ? undefined : instanceCertificate(as);
  const channel = credentials.createSsl(
    trust,
    own ? readFileSync(own.privateKeyFile) : null,
    own ? readFileSync(own.certificateFile) : null,
    { checkServerIdentity: spiffeServerIdentityCheck(componentSpiffeIdOf(DEFAULT_TRUST_DOMAIN, 'authz')) },
  );
  // authz is checked by its SPIFFE ID; the name is SNI only, and an IP there is deprecated (DEP0123).
  const client = new AuthorizationClient(mesh.authz.grpcAddress, channel, { 'grpc.ssl_target_name_override': 'localhost' });
  return new Promise((resolve, reject) =>
    client.check(CheckRequest.fromPartial(request), new Metadata(), { deadline: Date.now() + 30_000 }, (err, res) => {
      client.close();
      return err ? reject(err) : resolve(res!);
    }),
  );
}

async function startCloudflareStandIn(): Promise<{ server: Server; key: CryptoKey; kid: string; port: number }> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const kid = 'cf-e2e-1';
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  const server = createServer((req, res) => {
    if (req.url === `/${TEAM_DOMAIN}/cdn-cgi/access/certs`) {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [jwk], public_cert: { kid }, public_certs: [] }));
    } else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, key: privateKey, kid, port: (server.address() as AddressInfo).port };
}

beforeAll(async () => {
  const cf = await startCloudflareStandIn();
  cloudflare = cf;
  dataDir = mkdtempSync(join(tmpdir(), 'trellis-e2e-'));
  creds = writeDemoCredentials(dataDir);
  const quiet = process.env['E2E_VERBOSE'] ? (name: string, line: string) => process.stdout.write(`[${name}] ${line}\n`) : () => undefined;
  mesh = await startLocalMesh({
    dataDir,
    preferConventionalPorts: false,
    onLine: quiet,
    serviceCredentials: creds.file,
    appEnv: {
      authz: {
        TRELLIS_CLOUDFLARE_CERTS_URL_TEMPLATE: `http://127.0.0.1:${cf.port}/{teamDomain}/cdn-cgi/access/certs`,
      },
    },
  });
  demo = await startDemo(mesh, creds, { demoServiceScript: join(LOCAL_MESH_BUNDLES, 'demo-service.js'), onLine: quiet });
});

afterAll(async () => {
  await demo?.stop();
  await mesh?.stop();
  cloudflare?.server.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  if (log.length) process.stdout.write(`[e2e] convergence:\n  ${log.join('\n  ')}\n`);
});

describe('east-west', () => {
  it('edge → front → service-a → service-b, service-c, every hop carrying an A→B token', async () => {
    const hops = await converge('demo traffic flows end to end', () => demo.callEntry());
    const byService = new Map(hops.map((h) => [h.service, h]));
    expect(byService.get('front')).toMatchObject({ caller: '' });
    expect(byService.get('service-a')).toMatchObject({ caller: 'front', tokenAudience: 'service-a' });
    expect(byService.get('service-b')).toMatchObject({ caller: 'service-a', tokenAudience: 'service-b' });
    expect(byService.get('service-c')).toMatchObject({ caller: 'service-a', tokenAudience: 'service-c' });
    for (const hop of hops.filter((h) => h.caller)) expect(hop.tokenKeyId).not.toBe('');
    // One W3C trace across the hops: front started it, the SDK's interceptors carried it on.
    expect(hops[0]!.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set(hops.map((h) => h.traceId))).toEqual(new Set([hops[0]!.traceId]));
  });

  it('spreads calls across both service-b instances', async () => {
    const seen = new Set<string>();
    await converge('both service-b instances answer', async () => {
      const hops: HopRecord[] = await demo.callEntry();
      for (const h of hops) if (h.service === 'service-b') seen.add(h.instance);
      if (seen.size < 2) throw new Error(`only ${[...seen].join(', ')} so far`);
    });
    expect([...seen].sort()).toEqual(['service-b-1', 'service-b-2']);
  });

  it('denies an undeclared call: no token from authz, a denying Check, and the callee refuses a call without a token', async () => {
    // service-c declared nothing, so it may not call service-b.
    const tokens = new MeshTokenClient({
      authzUrl: mesh.authz.mtlsUrl,
      service: 'service-c',
      certificates: instanceCertificate('service-c-1'),
    });
    await expect(tokens.getToken('service-b')).rejects.toMatchObject({ status: 403 });

    const denied = await check(
      {
        attributes: {
          contextExtensions: { 'trellis.source': 'service-c', 'trellis.destination': 'service-b', 'trellis.direction': 'outbound' },
        },
      },
      'service-c-1',
    );
    expect(denied.status?.code).toBe(status.PERMISSION_DENIED);
    expect(denied.httpResponse?.$case).toBe('deniedResponse');

    const allowed = await check(
      {
        attributes: {
          contextExtensions: { 'trellis.source': 'service-a', 'trellis.destination': 'service-b', 'trellis.direction': 'outbound' },
        },
      },
      'service-a-1',
    );
    expect(allowed.status?.code).toBe(status.OK);
    const headers = allowed.httpResponse?.$case === 'okResponse' ? allowed.httpResponse.value.headers : [];
    expect(headers.find((h) => h.header?.key === 'authorization')?.header?.value).toMatch(/^Bearer ey/);

    // Straight to a service-b instance without a token: its server interceptor refuses.
    const instances = (await (await registry('GET', '/api/v1/services/service-b/instances')).json()) as
      Array<{ address: string; port: number }> | { items: Array<{ address: string; port: number }> };
    const first = Array.isArray(instances) ? instances[0]! : instances.items[0]!;
    const direct = new HopClient(`${first.address}:${first.port}`, credentials.createInsecure());
    const err = await new Promise<ServiceError>((resolve) => direct.call({ origin: 'intruder' }, new Metadata(), (e) => resolve(e!)));
    direct.close();
    expect(err.code).toBe(status.UNAUTHENTICATED);
  });
});

describe('etcd as the trust root (#12 point 4): the local mesh runs etcd with auth and each app as its own user', () => {
  // etcd's JSON gateway (/v3/...): the test needs no etcd client of its own.
  type EtcdAnswer = { error?: string; message?: string; token?: string; kvs?: unknown[] };
  const b64 = (text: string) => Buffer.from(text).toString('base64');
  const etcd = async (path: string, body: unknown, token?: string) => {
    const res = await fetch(`${mesh.etcdEndpoint}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: token } : {}) },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as EtcdAnswer };
  };
  const passwordFileOf = (app: AppName) => mesh.etcdEnv(app)['TRELLIS_ETCD_PASSWORD_FILE']!;
  const login = async (app: AppName) => {
    const env = mesh.etcdEnv(app);
    const res = await etcd('/v3/auth/authenticate', {
      name: env['TRELLIS_ETCD_USERNAME'],
      password: readFileSync(passwordFileOf(app), 'utf8').trim(),
    });
    expect(res.body.token).toEqual(expect.any(String));
    return res.body.token!;
  };
  const refused = (res: { status: number; body: EtcdAnswer }, reason: RegExp) => {
    expect(res.status).not.toBe(200);
    expect(res.body.message ?? res.body.error).toMatch(reason);
  };
  const forgedKey = { key: b64('/trellis/authz/keys/forged'), value: b64('{"kid":"forged"}') };
  const forgedService = { key: b64('/trellis/services/forged'), value: b64('{}') };
  /** Read as authz's user (it reads the whole prefix): what an attempt left behind. */
  const stored = async (key: string) => (await etcd('/v3/kv/range', { key }, await login('authz'))).body.kvs ?? [];

  it('gives each app its own etcd user, with a password only its owner can read', () => {
    const users = (['registry', 'control-plane', 'authz'] as const).map((app) => mesh.etcdEnv(app)['TRELLIS_ETCD_USERNAME']);
    expect(users).toEqual(['trellis-registry', 'trellis-control-plane', 'trellis-authz']);
    for (const app of ['registry', 'control-plane', 'authz'] as const) expect(statSync(passwordFileOf(app)).mode & 0o077).toBe(0);
  });

  it('refuses an anonymous write of a verification key', async () => {
    refused(await etcd('/v3/kv/put', forgedKey), /user name is empty|permission denied|not authenticated/i);
    expect(await stored(forgedKey.key)).toEqual([]);
  });

  it("refuses the registry's and the control plane's users a key write, and the control plane's a service write", async () => {
    refused(await etcd('/v3/kv/put', forgedKey, await login('registry')), /permission denied/i);
    refused(await etcd('/v3/kv/put', forgedKey, await login('control-plane')), /permission denied/i);
    refused(await etcd('/v3/kv/put', forgedService, await login('control-plane')), /permission denied/i);
    expect(await stored(forgedKey.key)).toEqual([]);
    expect(await stored(forgedService.key)).toEqual([]);
  });
});

describe('Done when (#11): a process without a workload certificate obtains no token from authz and no service config from the control plane (production defaults)', () => {
  const outboundAtoB = {
    attributes: {
      contextExtensions: { 'trellis.source': 'service-a', 'trellis.destination': 'service-b', 'trellis.direction': 'outbound' },
    },
  };

  it('authz: no Check answer without a client certificate, and the service credential alone buys no token of any audience', async () => {
    const noCert = (await check(outboundAtoB, 'no certificate').catch((e: unknown) => e)) as ServiceError;
    expect(noCert.code).toBe(status.UNAVAILABLE); // the TLS handshake is refused: the Check never runs
    const plaintext = new AuthorizationClient(mesh.authz.grpcAddress, credentials.createInsecure());
    const plainErr = await new Promise<ServiceError>((resolve) =>
      plaintext.check(CheckRequest.fromPartial(outboundAtoB), new Metadata(), { deadline: Date.now() + 30_000 }, (e) => resolve(e!)),
    );
    plaintext.close();
    expect(plainErr.code).toBe(status.UNAVAILABLE);

    // service-a's credential, the proof that buys a certificate, is no longer a way to a token.
    for (const audience of ['service-b', 'trellis-xds']) {
      const res = await fetch(`${mesh.authz.httpUrl}/v1/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Basic ${Buffer.from(`service-a:${creds.secrets.get('service-a')!}`).toString('base64')}`,
        },
        body: JSON.stringify({ audience }),
      });
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ type: 'https://trellis.dev/problems/certificate-required' });
    }
    // The mTLS port without a client certificate: the handshake fails.
    const trust = readFileSync(instanceCertificate('front-1').caCertificateFile, 'utf8');
    const handshake = await new Promise<{ status?: number; error?: string }>((resolve) => {
      const req = httpsRequest(
        `${mesh.authz.mtlsUrl}/v1/token`,
        {
          method: 'POST',
          ca: trust,
          checkServerIdentity: spiffeServerIdentityCheck(componentSpiffeIdOf(DEFAULT_TRUST_DOMAIN, 'authz')),
          agent: false,
        },
        (res) => resolve({ status: res.statusCode ?? 0 }),
      );
      req.on('error', (err) => resolve({ error: err.message }));
      req.end(JSON.stringify({ audience: 'service-b' }));
    });
    expect(handshake.status).toBeUndefined();
    expect(handshake.error).toBeDefined();
  });

  it("authz: service-c's certificate claiming trellis.source=service-a is denied (source-mismatch) and counted", async () => {
    const impostor = await check(outboundAtoB, 'service-c-1');
    expect(impostor.status?.code).toBe(status.PERMISSION_DENIED);
    expect(impostor.status?.message).toMatch(/^source-mismatch/);
    const metrics = await (await fetch(`${mesh.authz.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/trellis_authz_caller_identity_denials_total\{direction="outbound",reason="source-mismatch"\} [1-9]/);
  });

  it('control plane: a stream that presents neither a certificate nor an xDS token is refused by a control plane with production defaults', async () => {
    // A second control plane process on the same etcd, without the local mesh's TRELLIS_XDS_ALLOW_INSECURE_CLIENTS.
    const xdsPort = await freePort(0);
    const httpPort = await freePort(0);
    const production = startProcess({
      name: 'control-plane-production-defaults',
      command: process.execPath,
      args: [join(WORKSPACE_ROOT, 'dist/apps/control-plane/main.js')],
      env: {
        ...mesh.etcdEnv('control-plane'),
        TRELLIS_XDS_PORT: String(xdsPort),
        TRELLIS_HTTP_PORT: String(httpPort),
        TRELLIS_LOG_LEVEL: 'warn',
      },
    });
    try {
      await waitUntil(
        'the production-defaults control plane /readyz',
        () => httpOk(`http://127.0.0.1:${httpPort}/readyz`).catch(() => false),
        {
          process: production,
          timeoutMs: 60_000,
        },
      );
      const ads = new AggregatedDiscoveryServiceClient(`127.0.0.1:${xdsPort}`, credentials.createInsecure());
      const stream = ads.streamAggregatedResources();
      const outcome = new Promise<{ data?: DiscoveryResponse; error?: ServiceError }>((resolve) => {
        stream.once('data', (data: DiscoveryResponse) => resolve({ data }));
        stream.once('error', (error: ServiceError) => resolve({ error }));
      });
      stream.write(
        DiscoveryRequest.fromPartial({
          node: { id: 'intruder-1', cluster: 'service-a' },
          typeUrl: 'type.googleapis.com/envoy.config.listener.v3.Listener',
          resourceNames: [],
        }),
      );
      const { data, error } = await outcome;
      stream.cancel();
      ads.close();
      expect(data).toBeUndefined();
      expect(error?.code).toBe(status.UNAUTHENTICATED);
    } finally {
      await production.stop();
    }
  });
});

describe('registry changes reach the mesh', () => {
  it('removing a dependency stops the caller reaching it; declaring it again restores the call', async () => {
    await converge('baseline traffic', () => demo.callEntry());
    await editService('service-a', (spec) => ({ ...spec, dependencies: [{ service: 'service-b' }] }));
    await converge('service-a loses service-c after the registry write', async () => {
      const outcome = await demo.callEntry().then(
        () => 'ok',
        (e: Error) => e.message,
      );
      if (!/service-c/.test(outcome)) throw new Error(`still reachable: ${outcome}`);
    });
    await editService('service-a', (spec) => ({ ...spec, dependencies: [{ service: 'service-b' }, { service: 'service-c' }] }));
    const hops = await converge('service-a reaches service-c again after the registry write', () => demo.callEntry());
    expect(hops.map((h) => h.service)).toContain('service-c');
  });
});

describe('north-south', () => {
  const signAccessToken = (claims: { aud: string; email: string; iss?: string }) =>
    new SignJWT({ email: claims.email, type: 'app' })
      .setProtectedHeader({ alg: 'RS256', kid: cloudflare.kid })
      .setIssuer(claims.iss ?? `https://${TEAM_DOMAIN}`)
      .setAudience([claims.aud])
      .setSubject('user-1')
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(cloudflare.key);

  // Asked by the public service's own sidecar (front's certificate), which names itself as the destination.
  const edgeCheck = (token: string) =>
    check(
      {
        attributes: {
          contextExtensions: { 'trellis.direction': 'edge', 'trellis.destination': 'front' },
          request: { http: { host: 'front.example.com', path: '/checkout', method: 'GET', headers: { 'cf-access-jwt-assertion': token } } },
        },
      },
      'front-1',
    );

  it('admits a valid Cloudflare Access token for a public service and passes the identity upstream; refuses others', async () => {
    await editService('front', (spec) => ({
      ...spec,
      ingress: { host: 'front.example.com', pathPrefix: '/', cloudflareAccess: { teamDomain: TEAM_DOMAIN, audience: ACCESS_AUD } },
    }));
    const good = await signAccessToken({ aud: ACCESS_AUD, email: 'ada@example.com' });
    const ok = await converge('edge Check admits after the ingress is registered', async () => {
      const res = await edgeCheck(good);
      if (res.status?.code !== status.OK) throw new Error(`denied: ${JSON.stringify(res.status)}`);
      return res;
    });
    const headers = ok.httpResponse?.$case === 'okResponse' ? ok.httpResponse.value.headers : [];
    expect(headers.find((h) => h.header?.key === 'x-trellis-access-email')?.header?.value).toBe('ada@example.com');

    // A token that is not valid for this application is an authentication failure (401 at the edge).
    const refusals = [
      await edgeCheck(await signAccessToken({ aud: 'ffffffffffffffffffffffffffffffff', email: 'ada@example.com' })),
      await edgeCheck(await signAccessToken({ aud: ACCESS_AUD, email: 'ada@example.com', iss: 'https://evil.cloudflareaccess.com' })),
      await edgeCheck('not-a-jwt'),
    ];
    for (const refused of refusals) {
      expect(refused.status?.code).toBe(status.UNAUTHENTICATED);
      expect(refused.httpResponse?.$case).toBe('deniedResponse');
    }
  });
});

// promtool comes from Debian's prometheus package (tools/setup/ensure-system-deps.mjs installs it).
const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((path) => existsSync(path));
(promtool ? describe : describe.skip)('metrics (skipped where promtool is not installed)', () => {
  it.each(['registry', 'control-plane', 'authz'] as const)(
    "%s's /metrics passes promtool check metrics, with the standard process metrics",
    async (app) => {
      const url = { registry: mesh.registryUrl, 'control-plane': mesh.controlPlane.httpUrl, authz: mesh.authz.httpUrl }[app];
      const text = await (await fetch(`${url}/metrics`)).text();
      expect(text).toMatch(/^process_cpu_seconds_total \d/m);
      expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
      expect(text).toMatch(new RegExp(`^trellis_${app.replace('-', '_')}_\\w+`, 'm'));
      const checked = spawnSync(promtool!, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(checked.status === 0 ? 'ok' : `${checked.stdout}${checked.stderr}`).toBe('ok');
    },
  );
});

/** Processes (pid → command line) whose environment carries `marker`: everything one `npm start` started, however detached. */
function processesWith(marker: string): Map<number, string> {
  const found = new Map<number, string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0').includes(marker)) continue;
      found.set(Number(entry), readFileSync(`/proc/${entry}/cmdline`, 'latin1').split('\0').join(' ').trim());
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found;
}

describe('npm start and signals', () => {
  // SIGINT is Ctrl-C in a terminal (to the whole group: the children see it too); SIGTERM a supervisor's stop.
  it.each(['SIGTERM', 'SIGINT'] as const)(
    '%s to its process group during startup stops every process it started; TRELLIS_ADMIN_TOKEN is the admin token',
    async (signal) => {
      const data = mkdtempSync(join(tmpdir(), 'trellis-start-signal-'));
      const marker = `TRELLIS_LOCAL_DATA_DIR=${data}`;
      const adminToken = 'local-admin-token-from-the-environment';
      // As `npm start` runs in a terminal: its own process group.
      const start = spawn(process.execPath, [join(LOCAL_MESH_BUNDLES, 'main.js')], {
        // Its own data and ports: another `npm start` or suite on the machine keeps the conventional ones.
        env: { ...process.env, TRELLIS_LOCAL_DATA_DIR: data, TRELLIS_ADMIN_TOKEN: adminToken, TRELLIS_LOCAL_PORTS: 'any' },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      let output = '';
      start.stdout!.on('data', (c: Buffer) => (output += c.toString()));
      start.stderr!.on('data', (c: Buffer) => (output += c.toString()));
      const exited = new Promise<number | null>((resolve) => start.once('exit', (code) => resolve(code)));
      try {
        // Mid-startup: etcd, Redis and authz are running, the rest of the mesh is still to come.
        const authz = await converge(
          'authz starts under npm start',
          async () => {
            const pid = [...processesWith(marker)].find(([, cmd]) => cmd.includes('dist/apps/authz/main.js'))?.[0];
            if (!pid) throw new Error(`authz not started yet:\n${output}`);
            return pid;
          },
          60_000,
        );
        expect(output).not.toContain('Trellis is up');
        expect(readFileSync(`/proc/${authz}/environ`, 'latin1').split('\0')).toContain(`TRELLIS_ADMIN_TOKEN=${adminToken}`);
        const started = processesWith(marker);
        expect([...started.values()].some((cmd) => /\betcd\b/.test(cmd))).toBe(true);

        process.kill(-start.pid!, signal);
        expect(await exited).toBe(0);
        await converge(
          'every process npm start started is gone',
          async () => {
            const left = processesWith(marker);
            if (left.size > 0) throw new Error(`still running: ${[...left.values()].join(' | ')}`);
          },
          30_000,
        );
        expect(output).toContain('Stopped.');
      } finally {
        if (start.exitCode === null) process.kill(-start.pid!, 'SIGKILL');
        for (const pid of processesWith(marker).keys()) process.kill(pid, 'SIGKILL');
        rmSync(data, { recursive: true, force: true });
      }
    },
  );
});
