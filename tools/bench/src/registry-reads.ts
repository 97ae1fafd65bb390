// The benchmark proper (see ../registry-reads.mjs). Two roles in one file, each its own process:
//   (no role)         orchestrator: etcd, the seed, autocannon rounds, the etcd put baseline, the table
//   --role registry   the registry (startRegistry) against that etcd
// Reads: autocannon against GET /api/v1/services/{name} and /api/v1/topology, and against the same
// process's /healthz as the floor (same express stack, no data), rounds alternating the three, at a
// fixed rate and at saturation. Writes: sequential service replacements (PUT with If-Match) against
// sequential etcd puts from the same process, alternating.
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { KeyLayout, MeshStore, type ServiceSpecInput } from '@trellis/mesh-schema';
import { startEtcd } from '@trellis/testing';
import { parseBenchArgs } from './bench-cli';
import { BENCH_ADMIN_TOKEN, startBenchRegistry, startBenchTeamIdp } from './bench-registry';

const args = parseBenchArgs(
  {
    name: 'registry-reads',
    summary:
      "Registry reads from memory (GET /api/v1/services/{name} and /api/v1/topology) against the same process's /healthz " +
      "floor, and registry writes against etcd's own put latency, measured in the same run with autocannon. Needs etcd.",
  },
  {
    services: { type: 'string', default: '1000', help: 'Services seeded before the reads.' },
    rounds: { type: 'string', default: '3', help: 'Read rounds, each alternating the three targets.' },
    duration: { type: 'string', default: '10', help: 'Seconds per autocannon run.' },
    rate: { type: 'string', default: '1000', help: 'The fixed request rate of the rate-limited runs, requests/s.' },
    connections: { type: 'string', default: '10', help: "autocannon's connections." },
    writes: { type: 'string', default: '300', help: 'Writes of each kind per write round.' },
    'write-rounds': { type: 'string', help: 'Write rounds, alternating as the reads (default: --rounds).' },
    'write-warmup': {
      type: 'string',
      default: '60',
      help: 'Blocks of 10 of every write kind before the write rounds, not counted (JIT warm-up).',
    },
    'writes-only': { type: 'boolean', default: false, help: 'Only the write phase (no read rounds).' },
    smoke: { type: 'boolean', default: false, help: 'Seconds, tiny sizes (20 services, one 1 s round): what `npm test` runs.' },
    'registry-cpu-prof': {
      type: 'string',
      help: 'Directory for a CPU profile of the registry process (node --cpu-prof), written when it exits.',
    },
    'registry-node-options': {
      type: 'string',
      default: '',
      help: "V8 flags for the registry process, e.g. '--max-semi-space-size=4' (space-separated).",
    },
    role: { type: 'string', internal: true, help: 'registry: run the registry process.' },
    'etcd-endpoints': { type: 'string', internal: true, help: "The orchestrator's etcd, for the registry process." },
    'etcd-prefix': { type: 'string', internal: true, help: 'The key prefix the registry process uses.' },
    'team-jwks-url': { type: 'string', internal: true, help: "The benchmark's team identity provider, for the registry process." },
  },
);

const SMOKE = args.smoke;
const SERVICES = SMOKE ? 20 : Number(args.services);
const ROUNDS = SMOKE ? 1 : Number(args.rounds);
const DURATION_S = SMOKE ? 1 : Number(args.duration);
const RATE = SMOKE ? 100 : Number(args.rate);
const CONNECTIONS = Number(args.connections);
const WRITES = SMOKE ? 10 : Number(args.writes);
const WRITE_ROUNDS = SMOKE ? 1 : Number(args['write-rounds'] ?? args.rounds);
// The registry's write path (etcd client calls, schemas, the store) is still being optimized by
// V8 well past a few blocks: with 3 warm-up blocks, `--trace-opt` showed ~800, ~280 and ~150
// TurboFan compilations during the first three rounds of 200 and 10-40 a round from the fourth
// on, and those first rounds' ratios were 0.3-0.7x higher. 60 blocks (~10 s) reach that steady state.
const WRITE_WARMUP_BLOCKS = SMOKE ? 1 : Number(args['write-warmup']);
/** The pause after each block of registrations: longer than the lease pool's quiet window and its refill. */
const REGISTRATION_SETTLE_MS = 50;
const WRITES_ONLY = args['writes-only'];
const ADMIN_TOKEN = BENCH_ADMIN_TOKEN;

const serviceName = (i: number): string => `svc-${i}`;
const serviceSpec = (i: number, description = ''): ServiceSpecInput => ({
  name: serviceName(i),
  team: `team-${i % 20}`,
  protocol: 'http',
  port: 8080,
  description,
  dependencies: [{ service: serviceName((i + 1) % SERVICES) }, { service: serviceName((i + 7) % SERVICES) }],
});

// ---- role: registry ----
async function registryRole(): Promise<void> {
  const { registry, etcd } = await startBenchRegistry(args['etcd-endpoints']!, args['etcd-prefix']!, args['team-jwks-url']);
  process.send!({ type: 'ready', port: registry.httpPort });
  await new Promise((resolve) => process.once('SIGTERM', resolve));
  await registry.close();
  etcd.close();
  process.exit(0);
}

// ---- orchestrator ----
interface Latencies {
  p50: number;
  p99: number;
  max: number;
  rps: number;
  errors: number;
}

/** One autocannon run; latencies from its per-response times (ms, sub-ms resolution) rather than its whole-ms histogram. */
async function load(url: string, rate: number | undefined): Promise<Latencies> {
  const times: number[] = [];
  let errors = 0;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      { url, connections: CONNECTIONS, duration: DURATION_S, ...(rate ? { overallRate: rate } : {}) },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    instance.on('response', (_client, status, _bytes, ms) => {
      if (status !== 200) errors++;
      times.push(ms);
    });
  });
  return { ...percentiles(times), rps: result.requests.average, errors: errors + result.errors + result.non2xx };
}

function percentiles(times: number[]): { p50: number; p99: number; max: number } {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] ?? NaN };
}

type ReadResults = Record<string, { fixed: Latencies[]; saturated: Latencies[] }>;

/** Read rounds: each target at the fixed rate and at saturation, alternating, after a warm-up of each. */
async function measureReads(base: string): Promise<ReadResults> {
  const targets = {
    '/healthz (floor)': `${base}/healthz`,
    'GET /api/v1/services/{name}': `${base}/api/v1/services/${serviceName(Math.floor(SERVICES / 2))}`,
    'GET /api/v1/topology': `${base}/api/v1/topology`,
  };
  const topologyBytes = (await (await fetch(targets['GET /api/v1/topology'])).arrayBuffer()).byteLength;
  console.log(`topology response: ${(topologyBytes / 1024).toFixed(0)} KiB`);
  // Warm-up: JIT, the view's derived values, keep-alive connections.
  for (const url of Object.values(targets)) await load(url, undefined);

  const results: ReadResults = {};
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [name, url] of Object.entries(targets)) {
      const entry = (results[name] ??= { fixed: [], saturated: [] });
      entry.fixed.push(await load(url, RATE));
      entry.saturated.push(await load(url, undefined));
    }
    console.log(`round ${round}/${ROUNDS} done`);
  }

  return results;
}

function printReads(results: ReadResults): void {
  const floor = results['/healthz (floor)']!;
  const med = (xs: Latencies[], key: keyof Latencies) => median(xs.map((x) => x[key]));
  console.log(`\nreads at ${RATE} req/s (median of ${ROUNDS} round(s); ratio to the floor of the same round, median):`);
  console.log('| target | p50 | p99 | p99 / floor p99 | errors |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const [name, r] of Object.entries(results)) {
    const ratioP99 = median(r.fixed.map((x, i) => x.p99 / floor.fixed[i]!.p99));
    console.log(
      `| ${name} | ${ms(med(r.fixed, 'p50'))} | ${ms(med(r.fixed, 'p99'))} | ${ratioP99.toFixed(2)}× | ${sum(r.fixed.map((x) => x.errors))} |`,
    );
  }
  console.log(`\nreads at saturation (${CONNECTIONS} connections):`);
  console.log('| target | req/s | req/s / floor | p50 | p99 | errors |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const [name, r] of Object.entries(results)) {
    const ratioRps = median(r.saturated.map((x, i) => x.rps / floor.saturated[i]!.rps));
    console.log(
      `| ${name} | ${med(r.saturated, 'rps').toFixed(0)} | ${(ratioRps * 100).toFixed(0)} % | ${ms(med(r.saturated, 'p50'))} | ${ms(med(r.saturated, 'p99'))} | ${sum(r.saturated.map((x) => x.errors))} |`,
    );
  }
}

async function orchestrate(): Promise<void> {
  console.log(
    (WRITES_ONLY
      ? `registry writes: ${SERVICES} services; `
      : `registry reads: ${SERVICES} services, ${ROUNDS} round(s) × ${DURATION_S} s per target, ${CONNECTIONS} connections, fixed rate ${RATE} req/s; `) +
      `writes: ${WRITE_ROUNDS} round(s) × ${WRITES} of each after ${WRITE_WARMUP_BLOCKS * 10} of each to warm up; ` +
      `${cpus().length} cores, load average ${loadavg()[0]!.toFixed(1)}${SMOKE ? ' (smoke)' : ''}`,
  );
  const etcd = await startEtcd();
  const client = etcd.client();
  const layout = new KeyLayout(etcd.prefix);
  const store = new MeshStore(client, layout);
  const idp = await startBenchTeamIdp();
  let registry: ChildProcess | undefined;
  try {
    // Seed: S services, each calling two others, one instance each (leases that outlive the run).
    const started = performance.now();
    for (let i = 0; i < SERVICES; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, SERVICES - i) }, async (_, k) => {
          const n = i + k;
          await store.createService(serviceSpec(n), 'bench');
          await store.registerInstance(
            { service: serviceName(n), id: `${serviceName(n)}-1`, address: '10.0.0.1', port: 8080, platform: 'vm' },
            3600,
          );
        }),
      );
    }
    console.log(`seeded ${SERVICES} services and instances in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    const registryArgs = [
      '--role',
      'registry',
      '--etcd-endpoints',
      etcd.endpoints[0]!,
      '--etcd-prefix',
      etcd.prefix,
      '--team-jwks-url',
      idp.jwksUrl,
    ];
    registry = fork(process.argv[1]!, registryArgs, {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: [
        ...(args['registry-cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${args['registry-cpu-prof']}`] : []),
        ...args['registry-node-options'].split(' ').filter(Boolean),
      ],
    });
    const [ready] = (await Promise.race([
      once(registry, 'message'),
      once(registry, 'exit').then(([code]) => {
        throw new Error(`the registry exited (${String(code)}) before it was ready`);
      }),
    ])) as [{ port: number }];
    const base = `http://127.0.0.1:${ready.port}`;

    const results = WRITES_ONLY ? {} : await measureReads(base);
    const streamsBefore = await etcdKeepAliveStreamsStarted(etcd.endpoints[0]!);
    const writes = await measureWrites(base, client, etcd.prefix, registry.pid!, await idp.teamToken(serviceSpec(0).team));
    const streams = (await etcdKeepAliveStreamsStarted(etcd.endpoints[0]!)) - streamsBefore;
    if (!WRITES_ONLY) printReads(results);
    printWrites(writes.rounds, writes.cpu);
    const heartbeats = (WRITE_WARMUP_BLOCKS + WRITE_ROUNDS * Math.ceil(WRITES / 10)) * 10;
    console.log(
      `\netcd LeaseKeepAlive streams started during the write phase (etcd's grpc_server_started_total): ${streams} for ${heartbeats} heartbeats`,
    );
    const readErrors = Object.values(results)
      .flatMap((r) => [...r.fixed, ...r.saturated])
      .reduce((n, x) => n + x.errors, 0);
    if (readErrors > 0 || writes.failed > 0) {
      console.error(`FAILED: ${readErrors} read errors, ${writes.failed} failed writes`);
      process.exitCode = 1;
    }
  } finally {
    registry?.kill('SIGTERM');
    if (registry) await once(registry, 'exit');
    client.close();
    idp.close();
    await etcd.close();
  }
}

/** LeaseKeepAlive streams etcd has seen opened (its own /metrics); NaN when it does not serve them. */
async function etcdKeepAliveStreamsStarted(endpoint: string): Promise<number> {
  try {
    const text = await (await fetch(`${endpoint}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('grpc_server_started_total{') && l.includes('grpc_method="LeaseKeepAlive"'));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
  } catch {
    return NaN;
  }
}

/** What the write phase times, in the order each round runs its blocks. */
const WRITE_OPS = {
  etcdPut: 'etcd put (floor)',
  guardedTxn: 'etcd txn: guarded record + history puts (context)',
  leasePut: 'etcd lease grant, then put on it (context)',
  http: 'GET /healthz, one at a time (HTTP round trip)',
  replace: 'PUT /api/v1/services/{name} (If-Match)',
  replaceTeam: 'the same PUT with a team JWT (RS256), not the admin token',
  replaceFetch: 'the same PUT sent with fetch() (context: client cost)',
  create: 'POST /api/v1/services (create)',
  register: 'POST /api/v1/services/{name}/instances',
  heartbeat: 'PUT /api/v1/services/{name}/instances/{id}/heartbeat',
} as const;
type WriteOp = keyof typeof WRITE_OPS;
type WriteRound = Record<WriteOp, number[]>;
/** The registry process's CPU time (user + system, ms) spent during each operation's blocks of a round. */
type WriteCpu = Record<WriteOp, number>;

/** CPU time (user + system) a process has used, in ms, from /proc (10 ms ticks: summed over many blocks). */
function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    return NaN; // not Linux
  }
}
const CLOCK_TICKS_PER_S = 100;

/**
 * Sequential writes through the registry — replacing a service (PUT with If-Match), creating one
 * (POST), registering an instance (POST) — against bare etcd puts of a value of the same size
 * from this process's etcd client (the floor), alternating in blocks of 10, one request at a
 * time, every HTTP request on one keep-alive connection. For context, in the same blocks: a
 * bare HTTP round trip to the registry, the guarded txn a replace commits (record and history
 * entry under a modRevision compare) and a lease grant followed by a put on that lease (what
 * a registration needs at the least without a granted lease at hand). Last, a heartbeat of each
 * instance the block registered (a read and a lease refresh).
 */
async function measureWrites(
  base: string,
  client: ReturnType<Awaited<ReturnType<typeof startEtcd>>['client']>,
  prefix: string,
  registryPid: number,
  teamToken: string,
): Promise<{ rounds: WriteRound[]; cpu: WriteCpu[]; failed: number }> {
  const rounds: WriteRound[] = [];
  const cpu: WriteCpu[] = [];
  let failed = 0;
  let written = 0;
  const name = serviceName(0);
  let etag = (await fetch(`${base}/api/v1/services/${name}`)).headers.get('etag')!;
  const value = Buffer.from(JSON.stringify(serviceSpec(0, 'x'.repeat(64))));
  const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
  // One keep-alive connection, as the etcd client keeps one; node:http rather than fetch(),
  // whose WHATWG streams cost the client ~0.4 ms a request (the replaceFetch row shows it).
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const send = (method: string, path: string, extra: Record<string, string> = {}, body?: string) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders }>((resolve, reject) => {
      const req = httpRequest(`${base}${path}`, {
        method,
        agent,
        headers: body === undefined ? extra : { ...headers, ...extra, 'content-length': String(Buffer.byteLength(body)) },
      });
      req.on('error', reject);
      req.on('response', (res) => {
        res.on('data', () => undefined);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
        res.on('error', reject);
      });
      req.end(body);
    });
  const timed = async <R extends { status: number }>(into: number[], expected: number, request: () => Promise<R>): Promise<R> => {
    const t0 = performance.now();
    const res = await request();
    into.push(performance.now() - t0);
    if (res.status !== expected) failed++;
    return res;
  };
  const txnKey = `${prefix}bench/txn`;
  let txnRevision = (await client.put(txnKey).value(value).exec()).header.revision;
  const fresh = () => Object.fromEntries(Object.keys(WRITE_OPS).map((op) => [op, []])) as unknown as WriteRound;
  // One block of each operation: 10 of each, one at a time, in WRITE_OPS order.
  const block = async (times: WriteRound, used: WriteCpu): Promise<void> => {
    // The registry's CPU time during each operation's 10 requests (its watch applying the puts, for the etcd rows).
    let mark = processCpuMs(registryPid);
    const charge = (op: WriteOp): void => {
      const now = processCpuMs(registryPid);
      used[op] += now - mark;
      mark = now;
    };
    for (let k = 0; k < 10; k++) {
      const t0 = performance.now();
      await client.put(`${prefix}bench/put-${k}`).value(value);
      times.etcdPut.push(performance.now() - t0);
    }
    charge('etcdPut');
    for (let k = 0; k < 10; k++) {
      const t0 = performance.now();
      const res = await client.kv.txn({
        compare: [{ key: Buffer.from(txnKey), target: 'Mod', result: 'Equal', mod_revision: txnRevision }],
        success: [
          { request_put: { key: Buffer.from(txnKey), value } },
          { request_put: { key: Buffer.from(`${prefix}bench/history/${written + k}`), value } },
        ],
        failure: [{ request_range: { key: Buffer.from(txnKey) } }],
      });
      times.guardedTxn.push(performance.now() - t0);
      if (!res.succeeded) failed++;
      txnRevision = res.header.revision;
    }
    charge('guardedTxn');
    for (let k = 0; k < 10; k++) {
      const t0 = performance.now();
      const lease = await client.leaseClient.leaseGrant({ TTL: 60 });
      await client.kv.put({ key: Buffer.from(`${prefix}bench/leased-${k}`), value, lease: lease.ID });
      times.leasePut.push(performance.now() - t0);
    }
    charge('leasePut');
    for (let k = 0; k < 10; k++) await timed(times.http, 200, () => send('GET', '/healthz'));
    charge('http');
    for (let k = 0; k < 10; k++) {
      const body = JSON.stringify(serviceSpec(0, `write ${written + k}`));
      const res = await timed(times.replace, 200, () => send('PUT', `/api/v1/services/${name}`, { 'if-match': etag }, body));
      etag = (res.headers.etag as string | undefined) ?? etag;
    }
    charge('replace');
    for (let k = 0; k < 10; k++) {
      // One token for the whole run, as a CI job or a person presents theirs on every write.
      const body = JSON.stringify(serviceSpec(0, `team ${written + k}`));
      const auth = { authorization: `Bearer ${teamToken}`, 'if-match': etag };
      const res = await timed(times.replaceTeam, 200, () => send('PUT', `/api/v1/services/${name}`, auth, body));
      etag = (res.headers.etag as string | undefined) ?? etag;
    }
    charge('replaceTeam');
    for (let k = 0; k < 10; k++) {
      const body = JSON.stringify(serviceSpec(0, `fetch ${written + k}`));
      const res = await timed(times.replaceFetch, 200, async () => {
        const r = await fetch(`${base}/api/v1/services/${name}`, { method: 'PUT', headers: { ...headers, 'if-match': etag }, body });
        await r.arrayBuffer();
        return r;
      });
      etag = res.headers.get('etag') ?? etag;
    }
    charge('replaceFetch');
    for (let k = 0; k < 10; k++) {
      // A name never used before, calling two of the seeded services.
      const body = JSON.stringify({ ...serviceSpec(written + k), name: `new-${written + k}` });
      await timed(times.create, 201, () => send('POST', '/api/v1/services', {}, body));
    }
    charge('create');
    for (let k = 0; k < 10; k++) {
      const service = serviceName((written + k) % SERVICES);
      const body = JSON.stringify({ id: `${service}-w${written + k}`, address: '10.0.0.2', port: 8080, platform: 'vm', ttlSeconds: 3600 });
      await timed(times.register, 201, () => send('POST', `/api/v1/services/${service}/instances`, {}, body));
    }
    // The lease pool refills once registrations pause (a burst of grants): let it land here, in
    // the registrations' CPU, not in the next block's etcd put floor.
    await sleep(REGISTRATION_SETTLE_MS);
    charge('register');
    for (let k = 0; k < 10; k++) {
      // The instances this block registered, as their agents heartbeat them.
      const service = serviceName((written + k) % SERVICES);
      const path = `/api/v1/services/${service}/instances/${service}-w${written + k}/heartbeat`;
      await timed(times.heartbeat, 204, () => send('PUT', path, { authorization: `Bearer ${ADMIN_TOKEN}` }));
    }
    charge('heartbeat');
    written += 10;
  };
  // Warm-up (JIT, connections), not counted.
  const noCpu = () => Object.fromEntries(Object.keys(WRITE_OPS).map((op) => [op, 0])) as unknown as WriteCpu;
  for (let k = 0; k < WRITE_WARMUP_BLOCKS; k++) await block(fresh(), noCpu());
  for (let round = 0; round < WRITE_ROUNDS; round++) {
    const times = fresh();
    const used = noCpu();
    for (let done = 0; done < WRITES; done += 10) await block(times, used);
    rounds.push(times);
    cpu.push(used);
    console.log(`write round ${round + 1}/${WRITE_ROUNDS} done`);
  }
  agent.destroy();
  return { rounds, cpu, failed };
}

/** Per round: each operation's p50 and p99 and their ratios to the same round's etcd put; then the per-round medians. */
function printWrites(rounds: WriteRound[], cpu: WriteCpu[]): void {
  const ops = Object.keys(WRITE_OPS) as WriteOp[];
  const stats = rounds.map(
    (round) => Object.fromEntries(ops.map((op) => [op, percentiles(round[op])])) as Record<WriteOp, ReturnType<typeof percentiles>>,
  );
  console.log(`\nwrites, sequential, ${WRITES} of each per round (alternating in blocks of 10), ${rounds.length} round(s):`);
  console.log(`| operation | ${rounds.map((_, i) => `round ${i + 1} p50 / p99`).join(' | ')} |`);
  console.log(`| --- | ${rounds.map(() => '---').join(' | ')} |`);
  for (const op of ops) console.log(`| ${WRITE_OPS[op]} | ${stats.map((s) => `${ms(s[op].p50)} / ${ms(s[op].p99)}`).join(' | ')} |`);
  console.log('\nper-round median (ratios taken to the etcd put of the same round):');
  console.log('| operation | p50 | p99 | p50 / etcd put | p99 / etcd put | registry CPU per request |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const op of ops) {
    const p50 = median(stats.map((s) => s[op].p50));
    const p99 = median(stats.map((s) => s[op].p99));
    const r50 = median(stats.map((s) => s[op].p50 / s.etcdPut.p50));
    const r99 = median(stats.map((s) => s[op].p99 / s.etcdPut.p99));
    const cpuMs = median(cpu.map((used, i) => used[op] / rounds[i]![op].length));
    console.log(`| ${WRITE_OPS[op]} | ${ms(p50)} | ${ms(p99)} | ${r50.toFixed(2)}× | ${r99.toFixed(2)}× | ${ms(cpuMs)} |`);
  }
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

function ms(x: number): string {
  return `${x >= 10 ? x.toFixed(0) : x.toFixed(2)} ms`;
}

(args.role === 'registry' ? registryRole() : orchestrate()).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
