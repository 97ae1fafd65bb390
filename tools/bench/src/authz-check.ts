// The benchmark proper (see authz-check.mjs). Four roles in one file:
//   (no role)      orchestrator: starts each server as a child, loads it with h2load (hit, deny) and a
//                  grpc-js client (misses), compares
//   --role echo    a bare grpc-js server (authz's server options) answering the Check path with the request bytes
//   --role authz   authz (startAuthz) against a real etcd and Redis: checkout → orders declared (token
//                  cached: the hit), payments undeclared (the deny), caller-<i> → orders (the misses)
//   --role seed    writes those services to etcd, from its own process, before authz starts
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Client, credentials, Server, ServerCredentials } from '@grpc/grpc-js';
import { CheckRequest } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { connectEtcd, KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { startEtcd, startRedis } from '@trellis/testing';
import { startAuthz, tuneV8ForChecks } from '../../../apps/authz/src/authz';
import { loadAuthzConfig } from '../../../apps/authz/src/config';
import { GRPC_SERVER_OPTIONS } from '../../../apps/authz/src/grpc/grpc-server';
import { authzTestEnv, checkRequest, KeyDir, outbound } from '../../../apps/authz/test/support/harness';

const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

const { values: args } = parseArgs({
  options: {
    role: { type: 'string' },
    requests: { type: 'string', default: '100000' },
    clients: { type: 'string', default: '8' },
    streams: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '2' },
    // Checks of the miss path: each one a caller → orders pair never seen before (Redis GET miss, RS256 sign, SET).
    misses: { type: 'string', default: '2000' },
    // Concurrent Checks in flight during the miss phase (one grpc-js client, for echo and authz alike).
    'miss-concurrency': { type: 'string', default: '8' },
    // Seconds, tiny sizes: what `npm test` runs so the benchmark cannot rot.
    smoke: { type: 'boolean', default: false },
    // Answer with this many bytes instead of the request (e.g. the size of authz's OK response, to separate the cost of the bigger reply).
    'echo-response-bytes': { type: 'string', default: '0' },
    // Directory for CPU profiles of both servers (node --cpu-prof), written when they exit.
    'cpu-prof': { type: 'string' },
    // For --role seed.
    'etcd-endpoints': { type: 'string' },
    'etcd-prefix': { type: 'string' },
  },
});

const SMOKE = args.smoke;
const REQUESTS = SMOKE ? 2_000 : Number(args.requests);
const ROUNDS = SMOKE ? 1 : Number(args.rounds);
const MISSES = SMOKE ? 50 : Number(args.misses);
const callerName = (i: number): string => `caller-${i}`;

async function echoServer(): Promise<void> {
  // The same V8 settings and server options as authz, so the difference measured is the Check itself.
  tuneV8ForChecks();
  const server = new Server(GRPC_SERVER_OPTIONS);
  const identity = (b: Buffer) => b;
  const fixed = Number(args['echo-response-bytes']) > 0 ? Buffer.alloc(Number(args['echo-response-bytes']), 0x61) : undefined;
  server.register(
    CHECK_PATH,
    (call: { request: Buffer }, callback: (e: null, r: Buffer) => void) => callback(null, fixed ?? call.request),
    identity,
    identity,
    'unary',
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  announce({ grpcPort: port });
  await untilTerminated();
  server.forceShutdown();
}

async function authzServer(): Promise<void> {
  // As authz's main.ts does (tuneV8ForChecks in authz.ts).
  tuneV8ForChecks();
  const [etcd, redis] = await Promise.all([startEtcd(), startRedis()]);
  const keys = await KeyDir.create();
  await keys.addKey('key');
  const client = etcd.client();
  // The registry's writes come from another process, as in a mesh: authz itself only loads the
  // snapshot and follows the watch (writing thousands of records in this process would shape its
  // heap in ways a deployed authz never sees).
  const seeder = spawn(
    process.execPath,
    [process.argv[1]!, '--role', 'seed', '--etcd-endpoints', etcd.endpoints[0]!, '--etcd-prefix', etcd.prefix, '--misses', String(MISSES)],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  const [code] = (await once(seeder, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`seeding the registry failed (${String(code)})`);
  const config = loadAuthzConfig(authzTestEnv(etcd, redis, keys));
  const authz = await startAuthz({ config, logger: createLogger('authz', 'warn'), etcd: client });
  await authz.whenReady();
  announce({ grpcPort: authz.grpcPort, httpPort: authz.httpPort });
  await untilTerminated();
  await authz.close();
  client.close();
  await Promise.all([etcd.close(), redis.close()]);
  await keys.remove();
}

/** The services the benchmark decides on, written by their own process (see authzServer). */
async function seedServer(): Promise<void> {
  const client = connectEtcd({ endpoints: [args['etcd-endpoints']!] });
  const store = new MeshStore(client, new KeyLayout(args['etcd-prefix']!));
  const base = { team: 'bench', protocol: 'grpc' as const, port: 8080 };
  await store.createService({ ...base, name: 'orders' }, 'bench');
  await store.createService({ ...base, name: 'checkout', dependencies: [{ service: 'orders' }] }, 'bench');
  // The deny path: checkout has not declared payments.
  await store.createService({ ...base, name: 'payments' }, 'bench');
  // The miss path: callers that each call orders once.
  for (let i = 0; i < MISSES; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, MISSES - i) }, (_, k) =>
        store.createService({ ...base, name: callerName(i + k), dependencies: [{ service: 'orders' }] }, 'bench'),
      ),
    );
  }
  client.close();
}

function announce(ports: Record<string, number>): void {
  process.stdout.write(`READY ${JSON.stringify(ports)}\n`);
}

function untilTerminated(): Promise<void> {
  return new Promise((resolve) => process.once('SIGTERM', () => resolve()));
}

interface Started {
  child: ChildProcess;
  ports: { grpcPort: number; httpPort?: number };
}

function startRole(role: string): Promise<Started> {
  const roleArgs = ['--role', role, '--echo-response-bytes', args['echo-response-bytes']!, '--misses', String(MISSES)];
  const profile = args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${args['cpu-prof']}`, `--cpu-prof-name=${role}.cpuprofile`] : [];
  const child = spawn(process.execPath, [...profile, process.argv[1]!, ...roleArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split('\n').find((l) => l.startsWith('READY '));
      if (line) resolve({ child, ports: JSON.parse(line.slice(6)) });
    });
    child.once('exit', (code) => reject(new Error(`${role} server exited with ${code} before it was ready`)));
  });
}

async function stopRole(started: Started): Promise<void> {
  const exited = new Promise((resolve) => started.child.once('exit', resolve));
  started.child.kill('SIGTERM');
  await exited;
}

interface LoadResult {
  rps: number;
  /** Requests per second of the server's own CPU time: robust when other work shares the cores. */
  rpsPerCpu: number;
  succeeded: number;
  failed: number;
  meanLatencyMs: number;
}

/** utime + stime of a process, in seconds (Linux /proc; USER_HZ is 100 on every mainstream kernel). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function h2load(server: Started, bodyFile: string, requests: number): LoadResult {
  const port = server.ports.grpcPort;
  const cpuBefore = cpuSeconds(server.child.pid!);
  const run = spawnSync(
    'h2load',
    [
      '-n',
      String(requests),
      '-c',
      args.clients!,
      '-m',
      args.streams!,
      '-t',
      '1',
      '-H',
      'content-type: application/grpc',
      '-H',
      'te: trailers',
      '-d',
      bodyFile,
      `http://127.0.0.1:${port}${CHECK_PATH}`,
    ],
    { encoding: 'utf8' },
  );
  if (run.error) throw new Error(`h2load: ${run.error.message} (Debian: apt-get install nghttp2-client)`);
  const cpu = cpuSeconds(server.child.pid!) - cpuBefore;
  const text = run.stdout;
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(text)?.[1]);
  const [, succeeded, failed] = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(text) ?? [];
  const mean = /time for request:\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(\w+)/.exec(text);
  const meanLatencyMs = mean ? Number(mean[1]) * (mean[2] === 'us' ? 0.001 : mean[2] === 's' ? 1000 : 1) : NaN;
  if (!Number.isFinite(rps)) throw new Error(`could not read h2load's output:\n${text}\n${run.stderr}`);
  return { rps, rpsPerCpu: Number(succeeded) / cpu, succeeded: Number(succeeded), failed: Number(failed), meanLatencyMs };
}

/** Sums of a metric's series whose labels match `labels` (e.g. `result="ok"`), from authz's /metrics. */
async function metricSum(httpPort: number, name: string, labels = ''): Promise<number> {
  const text = await getText(`http://127.0.0.1:${httpPort}/metrics`);
  return [...text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\d+)`, 'gm'))]
    .filter((m) => m[1]!.includes(labels))
    .reduce((sum, m) => sum + Number(m[2]), 0);
}

/**
 * A GET on a fresh connection: minutes of load pass between two scrapes, and a kept-alive
 * socket the server has closed meanwhile would fail the next one.
 */
function getText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    }).on('error', reject);
  });
}

/** One gRPC message on the wire: the 5-byte prefix (uncompressed, length), then the CheckRequest. */
function grpcFrame(source: string, destination: string): { frame: Buffer; message: Buffer } {
  const message = Buffer.from(
    CheckRequest.encode(
      checkRequest({
        ...outbound(source, destination),
        headers: { ':method': 'GET', ':path': '/orders/42', 'user-agent': 'bench', 'x-request-id': 'b7a2c1d0-0000-4000-8000-000000000000' },
        path: '/orders/42',
      }),
    ).finish(),
  );
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return { frame: Buffer.concat([prefix, message]), message };
}

interface MissResult {
  rps: number;
  p50: number;
  p99: number;
}

/** The response to one Check, to report what each path sends back. */
async function oneCheck(port: number, body: Buffer): Promise<Buffer> {
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  const identity = (b: Buffer) => b;
  try {
    return await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(CHECK_PATH, identity, identity, body, (err, res) => (err || !res ? reject(err) : resolve(res))),
    );
  } finally {
    client.close();
  }
}

/** `bodies.length` Checks, `concurrency` in flight, from one grpc-js client; per-Check latency in ms. */
async function unaryLoad(port: number, bodies: Buffer[], concurrency: number): Promise<MissResult> {
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  const identity = (b: Buffer) => b;
  const call = (body: Buffer) =>
    new Promise<void>((resolve, reject) =>
      client.makeUnaryRequest(CHECK_PATH, identity, identity, body, (err) => (err ? reject(err) : resolve())),
    );
  const times: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++]!;
        const t0 = performance.now();
        await call(body);
        times.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  client.close();
  times.sort((x, y) => x - y);
  return { rps: bodies.length / seconds, p50: times[Math.floor(times.length / 2)]!, p99: times[Math.floor(times.length * 0.99)]! };
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

async function orchestrate(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-body-'));
  const hitFile = join(dir, 'hit.bin');
  const denyFile = join(dir, 'deny.bin');
  const hit = grpcFrame('checkout', 'orders');
  writeFileSync(hitFile, hit.frame);
  writeFileSync(denyFile, grpcFrame('checkout', 'payments').frame);

  console.log(
    `h2load -n ${REQUESTS} -c ${args.clients} -m ${args.streams} -t 1, ${ROUNDS} round(s), CheckRequest ${hit.message.length} bytes, echo answers ${Number(args['echo-response-bytes']) > 0 ? `${args['echo-response-bytes']} bytes` : 'with the request'}; ${MISSES} misses${SMOKE ? ' (smoke)' : ''}`,
  );
  const [echo, authz] = [await startRole('echo'), await startRole('authz')];
  const httpPort = authz.ports.httpPort!;
  const best = { echo: 0, hit: 0, deny: 0 };
  const perCpu = { echo: [] as number[], hit: [] as number[], deny: [] as number[] };
  // Other work on the machine changes from minute to minute: compare each authz run with the echo run just before it.
  const ratios = { hit: [] as number[], deny: [] as number[] };
  try {
    // Warm up both (JIT, connection setup) and mint the one token the hit path needs.
    h2load(echo, hitFile, Math.min(20_000, REQUESTS));
    h2load(authz, hitFile, Math.min(20_000, REQUESTS));
    h2load(authz, denyFile, Math.min(20_000, REQUESTS));
    const [okBytes, denyBytes] = [
      (await oneCheck(authz.ports.grpcPort, hit.message)).length,
      (await oneCheck(authz.ports.grpcPort, grpcFrame('checkout', 'payments').message)).length,
    ];
    console.log(
      `authz answers: OK (with the token header) ${okBytes} bytes, deny ${denyBytes} bytes; echo ${Number(args['echo-response-bytes']) || hit.message.length} bytes`,
    );
    const okBefore = await metricSum(httpPort, 'trellis_authz_checks_total', 'result="ok"');
    const deniedBefore = await metricSum(httpPort, 'trellis_authz_checks_total', 'reason="undeclared"');
    const mintedBefore = await metricSum(httpPort, 'trellis_authz_tokens_minted_total');
    for (let round = 1; round <= ROUNDS; round++) {
      let echoRps = 0;
      for (const [name, server, file] of [
        ['echo', echo, hitFile],
        ['hit', authz, hitFile],
        ['deny', authz, denyFile],
      ] as const) {
        const result = h2load(server, file, REQUESTS);
        if (result.failed > 0) throw new Error(`${name}: ${result.failed} requests failed`);
        best[name] = Math.max(best[name], result.rps);
        if (name === 'echo') echoRps = result.rps;
        else ratios[name].push(result.rps / echoRps);
        perCpu[name].push(result.rpsPerCpu);
        console.log(
          `round ${round} ${name.padEnd(5)} ${result.rps.toFixed(0).padStart(7)} req/s  ${result.rpsPerCpu.toFixed(0).padStart(7)} req/CPU-s  mean ${result.meanLatencyMs.toFixed(2)} ms  ${result.succeeded} ok`,
        );
      }
    }
    // Every measured hit must have been an allowed Check served from cache, every deny a refusal.
    const allowed = (await metricSum(httpPort, 'trellis_authz_checks_total', 'result="ok"')) - okBefore;
    const denied = (await metricSum(httpPort, 'trellis_authz_checks_total', 'reason="undeclared"')) - deniedBefore;
    const mintedWhileMeasuring = (await metricSum(httpPort, 'trellis_authz_tokens_minted_total')) - mintedBefore;
    console.log(
      `authz: ${allowed} Checks allowed and ${denied} denied as undeclared (${REQUESTS * ROUNDS} measured each); tokens minted while measuring: ${mintedWhileMeasuring}`,
    );
    if (mintedWhileMeasuring !== 0) throw new Error('the measured run minted tokens: not a cache-hit benchmark');
    if (allowed !== REQUESTS * ROUNDS || denied !== REQUESTS * ROUNDS) throw new Error('a measured Check was not decided as it should be');

    // The miss path: each Check a pair never seen before; echo answers the same requests as the floor.
    const missBodies = Array.from({ length: MISSES }, (_, i) => grpcFrame(callerName(i), 'orders').message);
    const concurrency = Number(args['miss-concurrency']);
    const echoMiss = await unaryLoad(echo.ports.grpcPort, missBodies, concurrency);
    const mintedBeforeMisses = await metricSum(httpPort, 'trellis_authz_tokens_minted_total');
    const authzMiss = await unaryLoad(authz.ports.grpcPort, missBodies, concurrency);
    const mintedForMisses = (await metricSum(httpPort, 'trellis_authz_tokens_minted_total')) - mintedBeforeMisses;
    if (mintedForMisses !== MISSES) throw new Error(`the miss phase minted ${mintedForMisses} tokens for ${MISSES} new pairs`);

    console.log(`\ncache hit and deny (h2load), authz / echo:`);
    console.log('| | echo | hit | hit / echo | deny | deny / echo |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    console.log(
      `| per round, median | — | — | **${pct(median(ratios.hit))}** (${ratios.hit.map((r) => (100 * r).toFixed(0)).join(', ')}) | — | **${pct(median(ratios.deny))}** (${ratios.deny.map((r) => (100 * r).toFixed(0)).join(', ')}) |`,
    );
    console.log(
      `| best wall clock, req/s | ${best.echo.toFixed(0)} | ${best.hit.toFixed(0)} | ${pct(best.hit / best.echo)} | ${best.deny.toFixed(0)} | ${pct(best.deny / best.echo)} |`,
    );
    console.log(
      `| per server CPU-second, median | ${median(perCpu.echo).toFixed(0)} | ${median(perCpu.hit).toFixed(0)} | ${pct(median(perCpu.hit) / median(perCpu.echo))} | ${median(perCpu.deny).toFixed(0)} | ${pct(median(perCpu.deny) / median(perCpu.echo))} |`,
    );
    console.log(`\nmiss (${MISSES} new pairs, ${concurrency} in flight, grpc-js client; every one minted):`);
    console.log('| | Checks/s | p50 | p99 |');
    console.log('| --- | --- | --- | --- |');
    console.log(`| echo (floor) | ${echoMiss.rps.toFixed(0)} | ${echoMiss.p50.toFixed(2)} ms | ${echoMiss.p99.toFixed(2)} ms |`);
    console.log(`| authz, miss | ${authzMiss.rps.toFixed(0)} | ${authzMiss.p50.toFixed(2)} ms | ${authzMiss.p99.toFixed(2)} ms |`);
  } finally {
    await Promise.all([stopRole(echo), stopRole(authz)]);
    rmSync(dir, { recursive: true, force: true });
  }
}

const role = args.role;
(role === 'echo' ? echoServer() : role === 'authz' ? authzServer() : role === 'seed' ? seedServer() : orchestrate()).catch(
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
