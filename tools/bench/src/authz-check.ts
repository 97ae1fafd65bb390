// The benchmark proper (see authz-check.mjs). Four roles in one file:
//   (no role)      orchestrator: starts each server as a child, loads it with h2load (hit, deny) and a
//                  grpc-js client (misses), compares
//   --role echo    a bare grpc-js server (authz's server options) answering the Check path with fixed bytes:
//                  the very response authz gives on that path (the floor), or the request bytes (--floor request)
//   --role authz   authz (startAuthz) against a real etcd and Redis: checkout → orders declared (token
//                  cached: the hit), payments undeclared (the deny), caller-<i> → orders (the misses)
//   --role seed    writes those services to etcd, from its own process, before authz starts
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parentPort, Worker, workerData } from 'node:worker_threads';
import { Client, credentials, Server, ServerCredentials, type ServerUnaryCall } from '@grpc/grpc-js';
import { CheckRequest } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { connectEtcd, KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { grpcConnectionLimitsFrom, grpcConnectionOptions } from '@trellis/runtime/grpc';
import { startEtcd, startRedis } from '@trellis/testing';
import { startAuthz, tuneV8ForChecks } from '../../../apps/authz/src/authz';
import { DEFAULT_AUTHZ_MAX_CONNECTION_AGE_MS, loadAuthzConfig } from '../../../apps/authz/src/config';
import { GRPC_SERVER_OPTIONS, sessionOfCall } from '../../../apps/authz/src/grpc/grpc-server';
import { countOpenStreamsByRegistry } from '../../../apps/authz/src/grpc/idle-limit';
import { keepStreamsById } from '../../../apps/authz/src/grpc/session-streams';
import { authzTestEnv, checkRequest, KeyDir, outbound } from '../../../apps/authz/test/support/harness';
import { parseBenchArgs } from './bench-cli';

const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

const args = parseBenchArgs(
  {
    name: 'authz-check',
    summary:
      'ext_authz Check throughput against a bare grpc-js unary handler (the floor), measured in the same run with the same ' +
      'load (h2load), ratios printed: the cache hit and the deny path; then the miss path (a pair never seen: Redis miss, ' +
      'RS256 sign, SET) against the same floor. Needs h2load (Debian: nghttp2-client), etcd and redis-server.',
  },
  {
    requests: { type: 'string', default: '100000', help: 'Checks per h2load run.' },
    clients: { type: 'string', default: '8', help: "h2load's clients (-c)." },
    streams: { type: 'string', default: '32', help: "h2load's concurrent streams per client (-m)." },
    rounds: {
      type: 'string',
      default: '2',
      help: 'Rounds, each alternating the floor and authz (hit and deny pairs in a Thue-Morse order).',
    },
    misses: {
      type: 'string',
      default: '2000',
      help: 'Checks of the miss path: each one a caller → orders pair never seen before (Redis GET miss, RS256 sign, SET).',
    },
    'miss-concurrency': {
      type: 'string',
      default: '8',
      help: 'Concurrent Checks in flight during the miss phase (one grpc-js client, for echo and authz alike).',
    },
    smoke: { type: 'boolean', default: false, help: 'Seconds, tiny sizes: what `npm test` runs so the benchmark cannot rot.' },
    floor: {
      type: 'string',
      default: 'authz',
      help:
        'What the floor answers: authz, the bytes authz answers on the same path (the least a Check server must send); request, ' +
        "the request bytes (255, where authz's OK carries a ~650-byte token: the floor before 2026-12-06); in-process, authz's " +
        "bytes from bare servers inside authz's own process (a diagnostic: what the process costs); in-worker, the same from a " +
        "worker thread of authz's process (its own isolate: heap, JIT).",
    },
    'floor-connection-limits': {
      type: 'boolean',
      default: false,
      help:
        "The floors also get authz's default gRPC connection limits (gRFC A9: a 300 s idle limit, which grpc-js tracks with " +
        "a 'close' listener on every stream): what authz's server pays per call that the default floor does not.",
    },
    'floor-streams-by-id': {
      type: 'boolean',
      default: false,
      help:
        "The floors also keep each connection's streams by id, as authz does since f159008 (apps/authz/src/grpc/session-streams.ts): " +
        "without it a floor's rounds turn to promoting every call after their first mark-compact, authz's do not.",
    },
    'check-worker': {
      type: 'string',
      default: 'true',
      help: "authz's TRELLIS_CHECK_WORKER: true (its default) serves Checks from a worker thread, false from the main thread.",
    },
    'echo-response-bytes': {
      type: 'string',
      default: '0',
      help: 'Let the floor answer with this many bytes instead (overrides --floor; what the size of the reply costs).',
    },
    'cpu-prof': {
      type: 'string',
      help: "Directory for CPU profiles of both servers (node --cpu-prof), written when they exit; authz's main thread and Check worker in DIR/authz/.",
    },
    'trace-gc': {
      type: 'boolean',
      default: false,
      help:
        "Count each server's scavenges and mark-compacts per round (node --trace-gc in the servers), and report each isolate's " +
        'live heap after its mark-compacts (authz has two: its main thread and its Check worker).',
    },
    'alloc-profile': {
      type: 'boolean',
      default: false,
      help:
        "Bytes each server allocates per request over the measured rounds (V8's sampling heap profiler, objects a scavenge " +
        'collects included): a load-independent measure of the work per Check. Slows the servers while on.',
    },
    'heap-profile-dir': {
      type: 'string',
      help:
        "With --alloc-profile: also write each server's sampled heap profile to DIR/<server>.heapprofile (Chrome DevTools' " +
        'Memory tab reads it), to see where the bytes are allocated.',
    },
    'floor-node-options': {
      type: 'string',
      default: '',
      help: "Extra node/V8 options for the floors' processes (e.g. --no-turbo-escape: what escape analysis saves each server).",
    },
    'authz-node-options': { type: 'string', default: '', help: "Extra node/V8 options for authz's process." },
    'authz-env': {
      type: 'string',
      default: '',
      help: "Settings for authz's config on top of the benchmark's ('TRELLIS_X=1 TRELLIS_Y=off'), e.g. what a default costs.",
    },
    role: { type: 'string', internal: true, help: 'echo, authz, seed or floor-worker: be that process (or worker thread).' },
    'answer-file': { type: 'string', internal: true, help: 'For --role echo: the file whose bytes the server answers every Check with.' },
    name: { type: 'string', internal: true, help: 'For the roles: the name their heap profile is written under.' },
    'etcd-endpoints': { type: 'string', internal: true, help: "For --role seed: the orchestrator's etcd." },
    'etcd-prefix': { type: 'string', internal: true, help: 'For --role seed: the key prefix.' },
  },
);

const SMOKE = args.smoke;
const REQUESTS = SMOKE ? 2_000 : Number(args.requests);
const ROUNDS = SMOKE ? 1 : Number(args.rounds);
const MISSES = SMOKE ? 50 : Number(args.misses);
/** --floor in-process or in-worker: the floors are served from authz's process. */
const FLOORS_IN_AUTHZ = args.floor === 'in-process' || args.floor === 'in-worker';
const callerName = (i: number): string => `caller-${i}`;

async function echoServer(): Promise<void> {
  // The same V8 settings and server options as authz, so the difference measured is the Check itself.
  tuneV8ForChecks();
  const fixed =
    Number(args['echo-response-bytes']) > 0
      ? Buffer.alloc(Number(args['echo-response-bytes']), 0x61)
      : args['answer-file']
        ? readFileSync(args['answer-file'])
        : undefined;
  const { server, port } = await serveFixedAnswer(fixed);
  announce({ grpcPort: port });
  await profileAllocationsOnSignal();
  await untilTerminated();
  server.forceShutdown();
}

/** A bare grpc-js server with authz's options answering the Check path with `fixed` (undefined: the request). */
async function serveFixedAnswer(fixed: Buffer | undefined): Promise<{ server: Server; port: number }> {
  const connectionLimits = args['floor-connection-limits']
    ? grpcConnectionOptions(grpcConnectionLimitsFrom({}, { maxConnectionAgeMs: DEFAULT_AUTHZ_MAX_CONNECTION_AGE_MS }))
    : {};
  const server = new Server({ ...GRPC_SERVER_OPTIONS, ...connectionLimits });
  const identity = (b: Buffer) => b;
  const swapped = new WeakSet<object>();
  const streamsById = args['floor-streams-by-id'];
  server.register(
    CHECK_PATH,
    (call: ServerUnaryCall<Buffer, Buffer>, callback: (e: null, r: Buffer) => void) => {
      if (streamsById) {
        // As authz's first Check on a connection does (grpc-server.ts, peerIdentity): with --floor-connection-limits
        // the registry also counts the connection's open streams for the idle limit (idle-limit.ts).
        const session = sessionOfCall(call);
        if (session && !swapped.has(session)) {
          swapped.add(session);
          const streams = keepStreamsById(session);
          if (streams) countOpenStreamsByRegistry(server, session, streams);
        }
      }
      callback(null, fixed ?? call.request);
    },
    identity,
    identity,
    'unary',
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port };
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
  const config = loadAuthzConfig({
    ...authzTestEnv(etcd, redis, keys),
    TRELLIS_CHECK_WORKER: args['check-worker']!,
    ...authzEnvOverrides(),
  });
  const authz = await startAuthz({ config, logger: createLogger('authz', 'warn'), etcd: client });
  await authz.whenReady();
  // --floor in-process: the floors run inside authz's process (same heap, same JIT state, same etcd and Redis
  // clients beside them), answering authz's own bytes: what the process, rather than the Check, costs.
  // --floor in-worker: the same in a worker thread of authz's process (an isolate of its own: own heap and JIT).
  const floors: Server[] = [];
  const workers: Worker[] = [];
  const floorPorts: Record<string, number> = {};
  if (FLOORS_IN_AUTHZ) {
    for (const [name, destination] of [
      ['floorHitPort', 'orders'],
      ['floorDenyPort', 'payments'],
    ] as const) {
      const answer = await oneCheck(authz.grpcPort, grpcFrame('checkout', destination).message);
      if (args.floor === 'in-worker') {
        const worker = new Worker(process.argv[1]!, {
          argv: [
            '--role',
            'floor-worker',
            ...(args['floor-connection-limits'] ? ['--floor-connection-limits'] : []),
            ...(args['floor-streams-by-id'] ? ['--floor-streams-by-id'] : []),
          ],
          workerData: answer,
        });
        workers.push(worker);
        floorPorts[name] = ((await once(worker, 'message')) as [number])[0];
      } else {
        const { server, port } = await serveFixedAnswer(answer);
        floors.push(server);
        floorPorts[name] = port;
      }
    }
  }
  announce({ grpcPort: authz.grpcPort, httpPort: authz.httpPort, ...floorPorts });
  await profileAllocationsOnSignal();
  await untilTerminated();
  for (const floor of floors) floor.forceShutdown();
  await Promise.all(workers.map((worker) => worker.terminate()));
  await authz.close();
  client.close();
  await Promise.all([etcd.close(), redis.close()]);
  await keys.remove();
}

/** --authz-env 'TRELLIS_A=1 TRELLIS_B=2': variables for authz's config, over the benchmark's own. */
function authzEnvOverrides(): Record<string, string> {
  const entries = args['authz-env']!.split(/\s+/).filter(Boolean);
  return Object.fromEntries(
    entries.map((entry) => {
      const match = /^(TRELLIS_[A-Z0-9_]+)=(.*)$/.exec(entry);
      if (!match) throw new Error(`--authz-env: "${entry}" is not TRELLIS_NAME=value`);
      return [match[1]!, match[2]!];
    }),
  );
}

/** --floor in-worker: a bare server answering the bytes it is given, in a worker thread of authz's process. */
async function floorWorker(): Promise<void> {
  tuneV8ForChecks();
  const answer = workerData as Uint8Array;
  const { port } = await serveFixedAnswer(Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength));
  parentPort!.postMessage(port);
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

/**
 * --alloc-profile: V8's sampling heap profiler from SIGUSR1 to SIGUSR2 (the measured rounds), objects that die
 * young included; the sampled total goes to stdout as `ALLOCATED <bytes>`.
 */
async function profileAllocationsOnSignal(): Promise<void> {
  if (!args['alloc-profile']) return;
  const { Session } = await import('node:inspector');
  const session = new Session();
  session.connect();
  const post = <T>(method: string, params: object = {}) =>
    new Promise<T>((resolve, reject) => session.post(method, params, (err, result) => (err ? reject(err) : resolve(result as T))));
  await post('HeapProfiler.enable');
  process.on('SIGUSR1', () => {
    void post('HeapProfiler.startSampling', {
      samplingInterval: 4096,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  });
  process.on('SIGUSR2', () => {
    void post<{ profile: { head: SampledNode } }>('HeapProfiler.stopSampling').then(({ profile }) => {
      const dir = args['heap-profile-dir'];
      if (dir) writeFileSync(join(dir, `${args.name ?? args.role}.heapprofile`), JSON.stringify(profile));
      process.stdout.write(`ALLOCATED ${sampledBytes(profile.head)}\n`);
    });
  });
}

interface SampledNode {
  selfSize: number;
  children: SampledNode[];
}

const sampledBytes = (node: SampledNode): number => node.children.reduce((sum, child) => sum + sampledBytes(child), node.selfSize);

function announce(ports: Record<string, number>): void {
  process.stdout.write(`READY ${JSON.stringify(ports)}\n`);
}

function untilTerminated(): Promise<void> {
  return new Promise((resolve) => process.once('SIGTERM', () => resolve()));
}

interface Started {
  name: string;
  child: ChildProcess;
  ports: { grpcPort: number; httpPort?: number; floorHitPort?: number; floorDenyPort?: number };
  /** Counted from the server's --trace-gc output (--trace-gc). */
  gc: { scavenges: number; markCompacts: number };
  /** Per isolate (--trace-gc's `[pid:isolate]`): its scavenges, and its heap in MB after each mark-compact. */
  isolates: Map<string, { scavenges: number; scavengeMs: number; liveAfterMarkCompactMb: number[]; markCompactMs: number }>;
  /** The process's resident set right after it was ready, before any Check, in bytes. */
  idleRss: number;
  /** Resolves with the next `ALLOCATED` report (--alloc-profile). */
  nextAllocated: () => Promise<number>;
}

function startRole(role: string, name: string = role, extra: string[] = []): Promise<Started> {
  const roleArgs = ['--role', role, '--echo-response-bytes', args['echo-response-bytes']!, '--misses', String(MISSES), ...extra];
  if (args['floor-connection-limits']) roleArgs.push('--floor-connection-limits');
  if (args['floor-streams-by-id']) roleArgs.push('--floor-streams-by-id');
  if (args['alloc-profile']) roleArgs.push('--alloc-profile', '--name', name);
  if (args['alloc-profile'] && args['heap-profile-dir']) roleArgs.push('--heap-profile-dir', args['heap-profile-dir']);
  const nodeOptions = (role === 'authz' ? args['authz-node-options']! : args['floor-node-options']!).split(' ').filter(Boolean);
  // authz's process has two isolates (the main thread, the Check worker): one fixed name would have the second
  // profile written overwrite the first, so authz's go to DIR/authz/ under node's own names (…<pid>.<thread id>…).
  const profile = !args['cpu-prof']
    ? []
    : role === 'authz'
      ? ['--cpu-prof', `--cpu-prof-dir=${join(args['cpu-prof'], name)}`]
      : ['--cpu-prof', `--cpu-prof-dir=${args['cpu-prof']}`, `--cpu-prof-name=${name}.cpuprofile`];
  const traceGc = args['trace-gc'] ? ['--trace-gc'] : [];
  const child = spawn(process.execPath, [...nodeOptions, ...traceGc, ...profile, process.argv[1]!, ...roleArgs], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const gc = { scavenges: 0, markCompacts: 0 };
  const isolates: Started['isolates'] = new Map();
  const isolateOf = (line: string) => {
    const id = /^\[\d+:(0x[0-9a-f]+)\]/.exec(line)?.[1] ?? '?';
    let isolate = isolates.get(id);
    if (!isolate) isolates.set(id, (isolate = { scavenges: 0, scavengeMs: 0, liveAfterMarkCompactMb: [], markCompactMs: 0 }));
    return isolate;
  };
  const allocated: ((bytes: number) => void)[] = [];
  const nextAllocated = () => new Promise<number>((resolve) => allocated.push(resolve));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('READY '))
          resolve({ name, child, ports: JSON.parse(line.slice(6)), gc, isolates, idleRss: residentBytes(child.pid!).rss, nextAllocated });
        else if (line.startsWith('ALLOCATED ')) allocated.shift()?.(Number(line.slice(10)));
        else if (line.includes(' ms: Scavenge')) {
          gc.scavenges += 1;
          const isolate = isolateOf(line);
          isolate.scavenges += 1;
          isolate.scavengeMs += pauseMs(line);
        } else if (line.includes(' ms: Mark-Compact')) {
          gc.markCompacts += 1;
          const isolate = isolateOf(line);
          const after = /Mark-Compact [\d.]+ \([\d.]+\) -> ([\d.]+) \(/.exec(line);
          if (after) isolate.liveAfterMarkCompactMb.push(Number(after[1]));
          isolate.markCompactMs += pauseMs(line);
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`${name} server exited with ${code} before it was ready`)));
  });
}

/**
 * Whether round `round` (from 1) measures the deny pair before the hit pair. authz serves both paths in one process, and
 * its mark-compacts recur every few rounds: with a fixed order they land on the same path round after round (measured:
 * every one of the Check worker's mark-compacts in the hit's rounds, every 4th authz round, while the old generation grew
 * ~16 MB per 40,000 Checks on either path). The order follows the Thue-Morse sequence (the parity of round - 1's one
 * bits: hit first, deny, deny, hit, deny, hit, hit, deny, ...), which no recurrence of any period keeps in step with.
 */
function denyFirstIn(round: number): boolean {
  let bits = 0;
  for (let n = round - 1; n > 0; n >>= 1) bits += n & 1;
  return bits % 2 === 1;
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
  /** CPU seconds of the server and of h2load over the load: which side was short of CPU. */
  serverCpu: number;
  loaderCpu: number;
  /** The server's GCs over the load (--trace-gc; zero without it). */
  scavenges: number;
  markCompacts: number;
}

/**
 * The thread's time in one GC from its --trace-gc line: the pause (`…MB, 12.34 / 0.00 ms`) and, for a
 * mark-compact, its incremental marking steps before it (`(+ 15.2 ms in 33 steps since start of marking…`).
 */
const pauseMs = (line: string): number =>
  Number(/MB, ([\d.]+) \/ [\d.]+ ms/.exec(line)?.[1] ?? 0) + Number(/\(\+ ([\d.]+) ms in \d+ steps/.exec(line)?.[1] ?? 0);

/** A process's resident set now and at its peak (VmRSS, VmHWM of Linux's /proc/<pid>/status), in bytes. */
function residentBytes(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024;
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

/**
 * What each server holds: its resident set idle (ready, before any Check), after the rounds and at its peak,
 * and with --trace-gc each isolate's heap after its mark-compacts (the live heap; the isolate with the most
 * scavenges over the run is the one that served the Checks: authz's Check worker, unless --check-worker false).
 */
function reportFootprint(servers: Started[]): void {
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  for (const server of servers) {
    const { rss, peak } = residentBytes(server.child.pid!);
    console.log(`${server.name}: RSS idle ${mib(server.idleRss)} MiB, after the rounds ${mib(rss)} MiB, peak ${mib(peak)} MiB`);
    const isolates = [...server.isolates.entries()].sort((a, b) => b[1].scavenges - a[1].scavenges);
    isolates.forEach(([id, isolate], i) => {
      const live = isolate.liveAfterMarkCompactMb;
      const which = isolates.length > 1 && i === 0 ? ' (served the Checks: most scavenges)' : '';
      const range = live.length > 0 ? `median ${median(live).toFixed(1)} MB (min ${Math.min(...live)}, max ${Math.max(...live)})` : 'none';
      console.log(
        `  isolate ${id}${which}: ${isolate.scavenges} scavenges (${isolate.scavengeMs.toFixed(0)} ms), ` +
          `${live.length} mark-compacts (${isolate.markCompactMs.toFixed(0)} ms), heap after them ${range}`,
      );
    });
  }
}

/** utime + stime of a process, in seconds (Linux /proc; USER_HZ is 100 on every mainstream kernel). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** utime + stime of this process's waited-for children (h2load), in seconds. */
function childrenCpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

/** A command's output; the event loop keeps running meanwhile, so the servers' stdout (GC lines) keeps being read. */
function run(command: string, argv: string[]): Promise<{ stdout: string; stderr: string; error?: Error }> {
  return new Promise((resolve) => {
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', (error) => resolve({ stdout, stderr, error }));
    child.once('close', () => resolve({ stdout, stderr }));
  });
}

async function h2load(server: Started, bodyFile: string, requests: number): Promise<LoadResult> {
  const port = server.ports.grpcPort;
  const cpuBefore = cpuSeconds(server.child.pid!);
  const loaderCpuBefore = childrenCpuSeconds();
  const gcBefore = { ...server.gc };
  const h2 = await run('h2load', [
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
  ]);
  if (h2.error) throw new Error(`h2load: ${h2.error.message} (Debian: apt-get install nghttp2-client)`);
  const cpu = cpuSeconds(server.child.pid!) - cpuBefore;
  const loaderCpu = childrenCpuSeconds() - loaderCpuBefore;
  // The last GC lines of the load may still be in the server's stdout buffer: give them a moment when counting.
  if (args['trace-gc']) await new Promise((resolve) => setTimeout(resolve, 200));
  const text = h2.stdout;
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(text)?.[1]);
  const [, succeeded, failed] = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(text) ?? [];
  const mean = /time for request:\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(\w+)/.exec(text);
  const meanLatencyMs = mean ? Number(mean[1]) * (mean[2] === 'us' ? 0.001 : mean[2] === 's' ? 1000 : 1) : NaN;
  if (!Number.isFinite(rps)) throw new Error(`could not read h2load's output:\n${text}\n${h2.stderr}`);
  return {
    rps,
    rpsPerCpu: Number(succeeded) / cpu,
    succeeded: Number(succeeded),
    failed: Number(failed),
    meanLatencyMs,
    serverCpu: cpu,
    loaderCpu,
    scavenges: server.gc.scavenges - gcBefore.scavenges,
    markCompacts: server.gc.markCompacts - gcBefore.markCompacts,
  };
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
  const deny = grpcFrame('checkout', 'payments');
  writeFileSync(hitFile, hit.frame);
  writeFileSync(denyFile, deny.frame);
  const fixedBytes = Number(args['echo-response-bytes']);
  const floorKind =
    fixedBytes > 0
      ? `${fixedBytes} bytes`
      : args.floor === 'request'
        ? 'the request'
        : FLOORS_IN_AUTHZ
          ? `authz's response on the same path, from inside authz's process (${args.floor})`
          : "authz's response on the same path";
  const floorOptions =
    (args['floor-connection-limits'] ? " with authz's server options and its default connection limits" : '') +
    (args['floor-streams-by-id'] ? ", each connection's streams kept by id as authz keeps them" : '');

  console.log(
    `h2load -n ${REQUESTS} -c ${args.clients} -m ${args.streams} -t 1, ${ROUNDS} round(s), CheckRequest ${hit.message.length} bytes, the floor answers ${floorKind}${floorOptions}; ${MISSES} misses${SMOKE ? ' (smoke)' : ''}; authz serves Checks ${args['check-worker'] === 'false' ? 'on its main thread' : 'from its Check worker thread'}${args['authz-env'] ? `; authz with ${args['authz-env']}` : ''}`,
  );
  // The heap profiler samples the main thread's isolate only.
  if (args['alloc-profile'] && args['check-worker'] !== 'false')
    console.log(
      "note: --alloc-profile samples authz's main thread, not its Check worker: add --check-worker false for the Check's allocations",
    );
  // authz first: the floors answer with its responses. One floor process per path, so each answers with fixed
  // bytes and does nothing else; the miss floor is the hit's (every miss ends in an OK with a token).
  const authz = await startRole('authz', 'authz', [
    '--check-worker',
    args['check-worker']!,
    '--authz-env',
    args['authz-env']!,
    ...(FLOORS_IN_AUTHZ ? ['--floor', args.floor!] : []),
  ]);
  const servers: Started[] = [authz];
  const httpPort = authz.ports.httpPort!;
  const best = { 'floor-hit': 0, hit: 0, 'floor-deny': 0, deny: 0 };
  const perCpu = { 'floor-hit': [] as number[], hit: [] as number[], 'floor-deny': [] as number[], deny: [] as number[] };
  // Other work on the machine changes from minute to minute: compare each authz run with the floor run just before it.
  const ratios = { hit: [] as number[], deny: [] as number[] };
  try {
    // Warm up authz (JIT, connection setup) and mint the one token the hit path needs.
    await h2load(authz, hitFile, Math.min(20_000, REQUESTS));
    await h2load(authz, denyFile, Math.min(20_000, REQUESTS));
    const [okResponse, denyResponse] = [
      await oneCheck(authz.ports.grpcPort, hit.message),
      await oneCheck(authz.ports.grpcPort, deny.message),
    ];
    const floorArgs = (response: Buffer, name: string): string[] => {
      if (args.floor === 'request') return [];
      const file = join(dir, `${name}.answer`);
      writeFileSync(file, response);
      return ['--answer-file', file];
    };
    const inProcess = (name: string, port: number | undefined): Started => ({ ...authz, name, ports: { grpcPort: port! } });
    const floorHit = FLOORS_IN_AUTHZ
      ? inProcess('floor-hit', authz.ports.floorHitPort)
      : await startRole('echo', 'floor-hit', floorArgs(okResponse, 'ok'));
    const floorDeny = FLOORS_IN_AUTHZ
      ? inProcess('floor-deny', authz.ports.floorDenyPort)
      : await startRole('echo', 'floor-deny', floorArgs(denyResponse, 'deny'));
    // In-process floors share authz's process: its allocation profile covers them too.
    if (!FLOORS_IN_AUTHZ) servers.push(floorHit, floorDeny);
    await h2load(floorHit, hitFile, Math.min(20_000, REQUESTS));
    await h2load(floorDeny, denyFile, Math.min(20_000, REQUESTS));
    const floorBytes = async (server: Started, request: Buffer) => (await oneCheck(server.ports.grpcPort, request)).length;
    console.log(
      `authz answers: OK (with the token header) ${okResponse.length} bytes, deny ${denyResponse.length} bytes; ` +
        `the floors: ${await floorBytes(floorHit, hit.message)} and ${await floorBytes(floorDeny, deny.message)} bytes`,
    );
    const okBefore = await metricSum(httpPort, 'trellis_authz_checks_total', 'result="ok"');
    const deniedBefore = await metricSum(httpPort, 'trellis_authz_checks_total', 'reason="undeclared"');
    const mintedBefore = await metricSum(httpPort, 'trellis_authz_tokens_minted_total');
    const allocated = args['alloc-profile'] ? servers.map((server) => server.nextAllocated()) : [];
    for (const server of servers) if (args['alloc-profile']) server.child.kill('SIGUSR1');
    for (let round = 1; round <= ROUNDS; round++) {
      let floorRps = 0;
      const hitPair = [
        ['floor-hit', floorHit, hitFile],
        ['hit', authz, hitFile],
      ] as const;
      const denyPair = [
        ['floor-deny', floorDeny, denyFile],
        ['deny', authz, denyFile],
      ] as const;
      for (const [name, server, file] of denyFirstIn(round) ? [...denyPair, ...hitPair] : [...hitPair, ...denyPair]) {
        const result = await h2load(server, file, REQUESTS);
        if (result.failed > 0) throw new Error(`${name}: ${result.failed} requests failed`);
        best[name] = Math.max(best[name], result.rps);
        if (name === 'floor-hit' || name === 'floor-deny') floorRps = result.rps;
        else ratios[name].push(result.rps / floorRps);
        perCpu[name].push(result.rpsPerCpu);
        const gc = args['trace-gc'] ? `  GC: ${result.scavenges} scavenges, ${result.markCompacts} mark-compacts` : '';
        console.log(
          `round ${round} ${name.padEnd(10)} ${result.rps.toFixed(0).padStart(7)} req/s  ${result.rpsPerCpu.toFixed(0).padStart(7)} req/CPU-s  mean ${result.meanLatencyMs.toFixed(2)} ms  ${result.succeeded} ok  CPU-s: server ${result.serverCpu.toFixed(2)}, h2load ${result.loaderCpu.toFixed(2)}${gc}`,
        );
      }
    }
    if (args['alloc-profile']) {
      for (const server of servers) server.child.kill('SIGUSR2');
      const bytes = await Promise.all(allocated);
      servers.forEach((server, i) => {
        const served = REQUESTS * ROUNDS * (server !== authz ? 1 : FLOORS_IN_AUTHZ ? 4 : 2);
        console.log(`${server.name}: ${(bytes[i]! / served / 1024).toFixed(2)} KiB allocated per request (${served} requests, sampled)`);
      });
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

    // The miss path: each Check a pair never seen before; the hit's floor answers the same requests.
    const missBodies = Array.from({ length: MISSES }, (_, i) => grpcFrame(callerName(i), 'orders').message);
    const concurrency = Number(args['miss-concurrency']);
    const echoMiss = await unaryLoad(floorHit.ports.grpcPort, missBodies, concurrency);
    const mintedBeforeMisses = await metricSum(httpPort, 'trellis_authz_tokens_minted_total');
    const authzMiss = await unaryLoad(authz.ports.grpcPort, missBodies, concurrency);
    const mintedForMisses = (await metricSum(httpPort, 'trellis_authz_tokens_minted_total')) - mintedBeforeMisses;
    if (mintedForMisses !== MISSES) throw new Error(`the miss phase minted ${mintedForMisses} tokens for ${MISSES} new pairs`);

    console.log(`\ncache hit and deny (h2load), authz / the floor answering the same bytes:`);
    console.log('| | floor (hit) | hit | hit / floor | floor (deny) | deny | deny / floor |');
    console.log('| --- | --- | --- | --- | --- | --- | --- |');
    console.log(
      `| per round, median | — | — | **${pct(median(ratios.hit))}** (${ratios.hit.map((r) => (100 * r).toFixed(0)).join(', ')}) | — | — | **${pct(median(ratios.deny))}** (${ratios.deny.map((r) => (100 * r).toFixed(0)).join(', ')}) |`,
    );
    console.log(
      `| best wall clock, req/s | ${best['floor-hit'].toFixed(0)} | ${best.hit.toFixed(0)} | ${pct(best.hit / best['floor-hit'])} | ${best['floor-deny'].toFixed(0)} | ${best.deny.toFixed(0)} | ${pct(best.deny / best['floor-deny'])} |`,
    );
    const cpu = (name: keyof typeof perCpu) => median(perCpu[name]);
    console.log(
      `| per server CPU-second, median | ${cpu('floor-hit').toFixed(0)} | ${cpu('hit').toFixed(0)} | ${pct(cpu('hit') / cpu('floor-hit'))} | ${cpu('floor-deny').toFixed(0)} | ${cpu('deny').toFixed(0)} | ${pct(cpu('deny') / cpu('floor-deny'))} |`,
    );
    console.log(`\nmiss (${MISSES} new pairs, ${concurrency} in flight, grpc-js client; every one minted):`);
    console.log('| | Checks/s | p50 | p99 |');
    console.log('| --- | --- | --- | --- |');
    console.log(`| echo (floor) | ${echoMiss.rps.toFixed(0)} | ${echoMiss.p50.toFixed(2)} ms | ${echoMiss.p99.toFixed(2)} ms |`);
    console.log(`| authz, miss | ${authzMiss.rps.toFixed(0)} | ${authzMiss.p50.toFixed(2)} ms | ${authzMiss.p99.toFixed(2)} ms |`);
    console.log('');
    reportFootprint(servers);
  } finally {
    await Promise.all(servers.map(stopRole));
    rmSync(dir, { recursive: true, force: true });
  }
}

const role = args.role;
(role === 'echo'
  ? echoServer()
  : role === 'authz'
    ? authzServer()
    : role === 'seed'
      ? seedServer()
      : role === 'floor-worker'
        ? floorWorker()
        : orchestrate()
).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
