// The fault suite: the whole mesh as processes (etcd, Redis, registry, control
// plane, authz, the demo services under `trellis agent`) with a meshed grpc-js-xds
// client calling service-a ≥ 20 times a second (each call fans out to service-b
// and service-c, every hop with an A→B token). Faults are injected one after the
// other; each asserts its outcome (zero failed calls where the design promises it)
// and records failed calls, recovery time, writes lost and memory before/after.
// Timings are printed, never asserted.
//
// `npm test` runs the fast subset; `npm run test:faults` the soak (TRELLIS_FAULTS_SOAK=1:
// etcd down 10 s and 60 s, authz down 30 s and 60 s, Redis down 30 s, a 500-write storm).
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { AuthorizationClient, CheckRequest, type CheckResponse } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { componentSpiffeIdOf, DEFAULT_TRUST_DOMAIN } from '@trellis/mesh-contracts';
import { spiffeServerIdentityCheck } from '@trellis/pki';
import { certificateFilesIn, MeshTokenClient } from '@trellis/sdk-node';
import { eventually } from '@trellis/testing';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoCertificateDir, startDemo, writeDemoCredentials, type Demo, type DemoCredentials } from '../src/demo/demo';
import { startLocalMesh, type AppName, type LocalMesh } from '../src/mesh';
import { startProcess, type ManagedProcess } from '../src/processes';
import { LOCAL_MESH_BUNDLES } from './build-once';

const SOAK = process.env['TRELLIS_FAULTS_SOAK'] === '1';
const PLAN = SOAK
  ? { etcdDownMs: [10_000, 60_000], authzDownMs: [30_000, 60_000], redisDownMs: 30_000, stormWrites: 500 }
  : { etcdDownMs: [10_000], authzDownMs: [30_000], redisDownMs: 10_000, stormWrites: 100 };
const LOAD_RATE = 30;

jest.setTimeout(SOAK ? 1_800_000 : 600_000);

let dataDir: string;
let mesh: LocalMesh;
let demo: Demo;
let creds: DemoCredentials;
let load: ManagedProcess;
/** One line per second from the load caller, stamped on arrival. */
const windows: { t: number; ok: number; failed: number; codes: Record<string, number>; errors: string[] }[] = [];
/** One row per fault, printed at the end (and copied into docs/reliability.md). */
const report: Record<string, unknown>[] = [];

const APPS: AppName[] = ['registry', 'control-plane', 'authz'];

function rssMiB(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of mesh.processes) {
    if (!APPS.includes(p.name as AppName) || p.child.pid === undefined) continue;
    try {
      const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p.child.pid}/status`, 'utf8'))?.[1]);
      out[p.name] = Math.round(kb / 1024);
    } catch {
      // not Linux, or it just exited
    }
  }
  return out;
}

function callsBetween(from: number, to: number): { ok: number; failed: number; codes: Record<string, number>; errors: string[] } {
  const sum = { ok: 0, failed: 0, codes: {} as Record<string, number>, errors: [] as string[] };
  for (const w of windows.filter((w) => w.t > from && w.t <= to + 1_000)) {
    sum.ok += w.ok;
    sum.failed += w.failed;
    for (const [code, n] of Object.entries(w.codes)) sum.codes[code] = (sum.codes[code] ?? 0) + n;
    if (sum.errors.length < 5) sum.errors.push(...w.errors);
  }
  return sum;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits on the mesh: a call failing while a process is down or restarting means "not yet". */
const until = <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000) =>
  eventually(what, probe, timeoutMs, { intervalMs: 100, retryErrors: true });

/** Waits for `n` whole seconds of load with no failed call; returns when they began. */
async function steadyLoad(what: string, n = 3, timeoutMs = 90_000): Promise<number> {
  const since = Date.now();
  try {
    return await until(
      what,
      async () => {
        const recent = windows.filter((w) => w.t > since).slice(-n);
        return recent.length === n && recent.every((w) => w.failed === 0 && w.ok > 0) ? recent[0]!.t : undefined;
      },
      timeoutMs,
    );
  } catch (err) {
    const output = [load, ...(demo?.processes ?? []), ...(mesh?.processes ?? [])]
      .filter((p) => p !== undefined)
      .map((p) => `--- ${p.name}\n${p.recentOutput.slice(-6).join('\n')}`)
      .join('\n');
    throw new Error(`${(err as Error).message}; last load windows: ${JSON.stringify(windows.slice(-3))}\n${output}`);
  }
}

async function registry(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${mesh.registryUrl}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${mesh.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(10_000),
  });
}

const serviceSpec = (name: string, dependencies: string[]) => ({
  name,
  team: 'faults',
  protocol: 'grpc',
  port: 50051,
  dependencies: dependencies.map((service) => ({ service })),
});

/** The dependencies a proxyless proxy of `service` is configured for by the control plane now (its API listeners). */
async function servedDependencies(service: string): Promise<string[] | undefined> {
  const res = await fetch(`${mesh.controlPlane.httpUrl}/debug/config_dump?service=${service}&kind=proxyless`, {
    headers: { authorization: `Bearer ${mesh.adminToken}` },
  });
  if (!res.ok) return undefined;
  const text = JSON.stringify(await res.json());
  // Listener names are the xds:/// targets; the server listener is the only other one.
  const names = new Set([...text.matchAll(/"name":"([a-z0-9-]+)"/g)].map((m) => m[1]!));
  return ['service-a', 'service-b', 'service-c', 'front'].filter((d) => names.has(d));
}

/** An ext_authz Check on authz's mTLS gRPC port, as `instance`'s proxy (its workload certificate). */
function check(request: Parameters<typeof CheckRequest.fromPartial>[0], instance: string, deadlineMs: number): Promise<CheckResponse> {
  const own = certificateFilesIn(demoCertificateDir(mesh, instance));
  const channel = credentials.createSsl(
    readFileSync(own.caCertificateFile),
    readFileSync(own.privateKeyFile),
    readFileSync(own.certificateFile),
    {
      checkServerIdentity: spiffeServerIdentityCheck(componentSpiffeIdOf(DEFAULT_TRUST_DOMAIN, 'authz')),
    },
  );
  // authz is checked by its SPIFFE ID; the name is SNI only, and an IP there is deprecated (DEP0123).
  const client = new AuthorizationClient(mesh.authz.grpcAddress, channel, { 'grpc.ssl_target_name_override': 'localhost' });
  // The deadline is the Check's own: the connection and its mTLS handshake come first, with a loaded
  // machine's patience (a fresh channel waited up to 0.56 s for its first pick at load 20).
  return new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 30_000, (err) => (err ? reject(err) : resolve())))
    .then(
      () =>
        new Promise<CheckResponse>((resolve, reject) =>
          client.check(CheckRequest.fromPartial(request), new Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) =>
            err ? reject(err) : resolve(res!),
          ),
        ),
    )
    .finally(() => client.close());
}
const outbound = (source: string, destination: string) => ({
  attributes: { contextExtensions: { 'trellis.source': source, 'trellis.destination': destination, 'trellis.direction': 'outbound' } },
});

function record(row: Record<string, unknown>): void {
  report.push(row);
  process.stdout.write(`[faults] ${JSON.stringify(row)}\n`);
}

beforeAll(async () => {
  // Each stage's time, so a set-up that runs out of time says where (the hook's timeout alone does not).
  const from = Date.now();
  const stage = (what: string) => process.stdout.write(`[faults] set-up: ${what} after ${Date.now() - from} ms\n`);
  dataDir = mkdtempSync(join(tmpdir(), 'trellis-faults-'));
  creds = writeDemoCredentials(dataDir);
  const quiet = process.env['FAULTS_VERBOSE']
    ? (name: string, line: string) => process.stdout.write(`[${name}] ${line}\n`)
    : () => undefined;
  mesh = await startLocalMesh({ dataDir, preferConventionalPorts: false, onLine: quiet, serviceCredentials: creds.file });
  stage('mesh started');
  demo = await startDemo(mesh, creds, { demoServiceScript: join(LOCAL_MESH_BUNDLES, 'demo-service.js'), onLine: quiet });
  stage('demo started');
  // The load caller is front (it declared service-a): every call is front → service-a → service-b, service-c.
  load = startProcess({
    name: 'load',
    command: process.execPath,
    args: ['--enable-source-maps', join(LOCAL_MESH_BUNDLES, 'load-caller.js')],
    env: {
      LOAD_SERVICE: 'front',
      LOAD_TARGET: 'service-a',
      LOAD_RATE: String(LOAD_RATE),
      TRELLIS_XDS_SERVER: mesh.controlPlane.xdsAddress,
      TRELLIS_AUTHZ_MTLS_URL: mesh.authz.mtlsUrl,
      // front-1's agent keeps front's workload certificate there (and renews it).
      TRELLIS_CERTIFICATE_DIR: demoCertificateDir(mesh, 'front-1'),
    },
    onLine: (name, line) => {
      if (line.startsWith('{"msg":"calls"')) windows.push({ t: Date.now(), ...JSON.parse(line) });
      else quiet(name, line);
    },
  });
  await steadyLoad('steady traffic front → service-a → service-b, service-c', 5, 120_000);
  stage('steady traffic');
}, 300_000);

afterAll(async () => {
  await load?.stop();
  await demo?.stop();
  await mesh?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  process.stdout.write(`[faults] summary (${SOAK ? 'soak' : 'fast subset'}):\n${report.map((r) => `  ${JSON.stringify(r)}`).join('\n')}\n`);
  const out = process.env['TRELLIS_FAULTS_REPORT'];
  if (out) writeFileSync(out, JSON.stringify(report, null, 2));
});

it('carries ≥ 20 calls/s before any fault', () => {
  const recent = windows.slice(-5);
  expect(recent.reduce((n, w) => n + w.ok, 0) / recent.length).toBeGreaterThanOrEqual(20);
});

describe.each(PLAN.etcdDownMs)('etcd stopped for %i ms', (downMs) => {
  it('proxies keep their config, writes get 503 problem+json, acknowledged writes survive, the first change after converges', async () => {
    const tag = `etcd${downMs / 1000}`;
    // Writes acknowledged before the fault.
    const before = Array.from({ length: 5 }, (_, i) => `${tag}-pre-${i}`);
    for (const name of before) expect((await registry('POST', '/services', serviceSpec(name, ['service-b']))).status).toBe(201);
    const mem = rssMiB();
    const etcd = mesh.processes.find((p) => p.name === 'etcd')!;
    const start = Date.now();
    await etcd.stop();
    const during = await until('a registry write refused with 503', async () => {
      const res = await registry('POST', '/services', serviceSpec(`${tag}-during`, []));
      return res.status === 503 ? res : undefined;
    });
    expect(during.headers.get('content-type')).toMatch(/application\/problem\+json/);
    await sleep(Math.max(0, downMs - (Date.now() - start)));
    await mesh.restart('etcd');
    const restored = Date.now();
    // The first change after recovery converges to the proxies' configuration.
    const changed = await until('a write accepted after recovery', async () => {
      const res = await registry('POST', '/services', serviceSpec(`${tag}-after`, ['service-c']));
      return res.status === 201 ? Date.now() : undefined;
    });
    await until('the change served by the control plane', async () => (await servedDependencies(`${tag}-after`))?.includes('service-c'));
    const converged = Date.now();
    const lost = [];
    for (const name of before) if ((await registry('GET', `/services/${name}`)).status !== 200) lost.push(name);
    await steadyLoad('traffic steady after etcd recovery');
    const calls = callsBetween(start, Date.now());
    record({
      fault: `etcd stopped ${downMs / 1000} s`,
      failedCalls: calls.failed,
      calls: calls.ok + calls.failed,
      codes: calls.codes,
      recoveryMs: converged - restored,
      firstWriteAcceptedMs: changed - restored,
      writesLost: lost.length,
      rssMiBBefore: mem,
      rssMiBAfter: rssMiB(),
    });
    expect(lost).toEqual([]);
    expect(calls.errors).toEqual([]);
    expect(calls.failed).toBe(0);
  });
});

describe.each(PLAN.authzDownMs)('authz down for %i ms', (downMs) => {
  it('meshed services that talked before fail no call (held tokens, held keys); a new edge fails closed', async () => {
    const mem = rssMiB();
    const authz = mesh.processes.find((p) => p.name === 'authz')!;
    const start = Date.now();
    await authz.stop();
    // A caller with no token yet (service-a has declared service-b, but this client never asked): refused, never let through.
    const fresh = new MeshTokenClient({
      authzUrl: mesh.authz.mtlsUrl,
      service: 'service-a',
      certificates: certificateFilesIn(demoCertificateDir(mesh, 'service-a-1')),
    });
    await expect(fresh.getToken('service-b')).rejects.toThrow();
    await sleep(Math.max(0, downMs - (Date.now() - start)));
    await mesh.restart('authz');
    const restored = Date.now();
    await until('a new token issued again', () => fresh.getToken('service-b'));
    const recovered = Date.now();
    await steadyLoad('traffic steady after authz recovery');
    const calls = callsBetween(start, Date.now());
    record({
      fault: `authz down ${downMs / 1000} s`,
      failedCalls: calls.failed,
      calls: calls.ok + calls.failed,
      codes: calls.codes,
      recoveryMs: recovered - restored,
      writesLost: 0,
      rssMiBBefore: mem,
      rssMiBAfter: rssMiB(),
    });
    expect(calls.errors).toEqual([]);
    expect(calls.failed).toBe(0);
  });
});

it(`Redis down for ${PLAN.redisDownMs} ms: Checks keep their deadline, nothing undeclared is allowed, no call fails`, async () => {
  const mem = rssMiB();
  const redis = mesh.processes.find((p) => p.name === 'redis')!;
  const start = Date.now();
  await redis.stop();
  let checks = 0;
  while (Date.now() - start < PLAN.redisDownMs) {
    // A 500 ms deadline: Redis's failure must cost a local signature, not the caller's time.
    const allowed = await check(outbound('service-a', 'service-c'), 'service-a-1', 500);
    expect(allowed.status?.code).toBe(status.OK);
    const denied = await check(outbound('service-c', 'service-a'), 'service-c-1', 500);
    expect(denied.status?.code).toBe(status.PERMISSION_DENIED);
    checks += 2;
    await sleep(250);
  }
  await mesh.restart('redis');
  const restored = Date.now();
  const metrics = async () => (await fetch(`${mesh.authz.httpUrl}/metrics`)).text();
  await until('the Redis breaker closed', async () => /trellis_authz_redis_breaker_open 0/.test(await metrics()));
  const recovered = Date.now();
  await steadyLoad('traffic steady after Redis recovery');
  const calls = callsBetween(start, Date.now());
  record({
    fault: `Redis down ${PLAN.redisDownMs / 1000} s`,
    failedCalls: calls.failed,
    calls: calls.ok + calls.failed,
    checks,
    recoveryMs: recovered - restored,
    writesLost: 0,
    rssMiBBefore: mem,
    rssMiBAfter: rssMiB(),
  });
  expect(calls.failed).toBe(0);
});

it('control plane killed (SIGKILL) and restarted: calls keep flowing on the last config; the first change after converges', async () => {
  const mem = rssMiB();
  const cp = mesh.processes.find((p) => p.name === 'control-plane')!;
  const start = Date.now();
  cp.child.kill('SIGKILL');
  await cp.exited;
  await sleep(5_000);
  await mesh.restart('control-plane');
  const restored = Date.now();
  expect((await registry('POST', '/services', serviceSpec('cp-restart-after', ['service-b']))).status).toBe(201);
  await until('the change served by the restarted control plane', async () =>
    (await servedDependencies('cp-restart-after'))?.includes('service-b'),
  );
  const recovered = Date.now();
  await steadyLoad('traffic steady after the control-plane restart');
  const calls = callsBetween(start, Date.now());
  record({
    fault: 'control plane SIGKILLed, restarted after 5 s',
    failedCalls: calls.failed,
    calls: calls.ok + calls.failed,
    recoveryMs: recovered - restored,
    writesLost: 0,
    rssMiBBefore: mem,
    rssMiBAfter: rssMiB(),
  });
  expect(calls.errors).toEqual([]);
  expect(calls.failed).toBe(0);
});

it(`a storm of ${PLAN.stormWrites} mixed writes under traffic: no acknowledged write lost, the control plane ends on the registry's state`, async () => {
  const mem = rssMiB();
  const start = Date.now();
  const SERVICES = Math.max(5, Math.floor(PLAN.stormWrites / 10));
  const names = Array.from({ length: SERVICES }, (_, i) => `storm-${i}`);
  const deps = ['service-a', 'service-b', 'service-c'];
  /** What each acknowledged write makes the state: dependencies, or null for deleted. */
  const expected = new Map<string, string[] | null>();
  let seed = 7;
  const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  let writes = 0;
  let refused = 0;
  // One chain of writes per service (a write's outcome decides the next), chains in parallel.
  const perService = Math.ceil(PLAN.stormWrites / SERVICES);
  await Promise.all(
    names.map(async (name) => {
      for (let i = 0; i < perService; i++) {
        const exists = expected.get(name);
        writes++;
        if (exists === undefined || exists === null) {
          const dependencies = deps.filter(() => random(2) === 0);
          const res = await registry('POST', '/services', serviceSpec(name, dependencies));
          if (res.status === 201) expected.set(name, dependencies);
          else refused++;
        } else if (random(4) === 0) {
          const res = await registry('DELETE', `/services/${name}`);
          if (res.status === 204) expected.set(name, null);
          else refused++;
        } else {
          const current = await registry('GET', `/services/${name}`);
          const dependencies = deps.filter(() => random(2) === 0);
          const res = await registry('PUT', `/services/${name}`, serviceSpec(name, dependencies), {
            'if-match': current.headers.get('etag') ?? '',
          });
          if (res.status === 200) expected.set(name, dependencies);
          else refused++;
        }
      }
    }),
  );
  const stormEnded = Date.now();
  const acked = writes - refused;
  // Every acknowledged write's result is what the registry holds…
  const lost: string[] = [];
  for (const [name, dependencies] of expected) {
    const res = await registry('GET', `/services/${name}`);
    if (dependencies === null ? res.status !== 404 : res.status !== 200) lost.push(name);
    else if (dependencies) {
      const body = (await res.json()) as { spec?: { dependencies?: { service: string }[] }; dependencies?: { service: string }[] };
      const held = (body.spec?.dependencies ?? body.dependencies ?? []).map((d) => d.service).sort();
      if (JSON.stringify(held) !== JSON.stringify([...dependencies].sort())) lost.push(name);
    }
  }
  // …and what the control plane serves.
  const live = [...expected].filter(([, d]) => d !== null) as [string, string[]][];
  await until('the control plane serving the registry state', async () => {
    for (const [name, dependencies] of live)
      if (JSON.stringify((await servedDependencies(name)) ?? []) !== JSON.stringify(deps.filter((d) => dependencies.includes(d))))
        return false;
    return true;
  });
  const converged = Date.now();
  await steadyLoad('traffic steady after the storm');
  const calls = callsBetween(start, Date.now());
  record({
    fault: `write storm: ${writes} mixed writes (create, update, delete) over ${SERVICES} services`,
    failedCalls: calls.failed,
    calls: calls.ok + calls.failed,
    acknowledgedWrites: acked,
    refusedWrites: refused,
    writesLost: lost.length,
    recoveryMs: converged - stormEnded,
    stormMs: stormEnded - start,
    rssMiBBefore: mem,
    rssMiBAfter: rssMiB(),
  });
  expect(lost).toEqual([]);
  expect(calls.failed).toBe(0);
});

it('an instance frozen (SIGSTOP) past its lease: its agent withdraws it, no call fails, and it serves again after SIGCONT', async () => {
  const mem = rssMiB();
  // service-b-1's app is the child of its `trellis agent` process.
  const agent = demo.processes.find((p) => p.name === 'service-b-1')!;
  const appPid = Number(readFileSync(`/proc/${agent.child.pid}/task/${agent.child.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  expect(appPid).toBeGreaterThan(0);
  const servedBy = async () => (await demo.callEntry()).filter((h) => h.service === 'service-b').map((h) => h.instance);
  await until('service-b-1 serving before the freeze', async () => (await servedBy()).includes('service-b-1'));
  const start = Date.now();
  process.kill(appPid, 'SIGSTOP');
  // Past the lease (the demo's TTL is 10 s): the agent's health check fails and it withdraws the instance.
  await sleep(15_000);
  const instances = (await (await registry('GET', '/services/service-b/instances')).json()) as { items: { id: string }[] };
  process.kill(appPid, 'SIGCONT');
  const thawed = Date.now();
  await until('service-b-1 serving again after SIGCONT', async () => (await servedBy()).includes('service-b-1'), 90_000);
  const back = Date.now();
  await steadyLoad('traffic steady after the thaw');
  const calls = callsBetween(start, Date.now());
  record({
    fault: 'instance SIGSTOPped 15 s (lease TTL 10 s)',
    failedCalls: calls.failed,
    calls: calls.ok + calls.failed,
    codes: calls.codes,
    registeredWhileFrozen: instances.items.map((i) => i.id),
    recoveryMs: back - thawed,
    writesLost: 0,
    rssMiBBefore: mem,
    rssMiBAfter: rssMiB(),
  });
  expect(calls.errors).toEqual([]);
  expect(calls.failed).toBe(0);
});
