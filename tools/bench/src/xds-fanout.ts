// The benchmark proper (see ../xds-fanout.mjs). Four roles in one file, each its own process:
//   (no role)        orchestrator: etcd, the registry writes, rounds, the table
//   --role cp        the control plane (startControlPlane) against that etcd
//   --role floor     a bare grpc-js bidi-stream server: it answers each stream's first request of each
//                    type, and on an etcd watch event for `hub` writes one small message to each affected
//                    stream — the floor for "etcd write → watch → N streams"
//   --role clients   P ADS streams to one of the two, in one of three profiles, timing arrivals:
//                      clusters  SotW, CDS only (the first version of this benchmark)
//                      envoy     SotW as an Envoy sidecar: user_agent_name envoy, CDS and LDS, then EDS for
//                                the clusters and RDS for the listeners it got, ACKs, and after a CDS update
//                                the EDS request again (Envoy re-creates changed clusters)
//                      delta     the same subscriptions over Delta ADS
//                    over node:http2 with gRPC's framing (grpc-wire-client.ts), reading of each response only what
//                    an ACK, the follow-ups and the round's accounting need (xds-wire.ts): one process simulates
//                    thousands of Envoys, so its cost per response is kept low
// Times cross processes as performance.timeOrigin + performance.now() (wall-clock based, sub-ms).
import { fork, type ChildProcess } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { monitorEventLoopDelay, performance, PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Server, type ServerDuplexStream } from '@grpc/grpc-js';
import { TypeUrl } from '@trellis/envoy-types';
import { Node } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { AggregatedDiscoveryServiceService } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import type { DeltaDiscoveryRequest, DiscoveryRequest } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { DeltaDiscoveryResponse, DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { connectEtcd, etcdOptionsFromEnv, KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { bindGrpcServer } from '@trellis/runtime/grpc';
import { envoyBuildNodeFields, startEtcd } from '@trellis/testing';
import { startControlPlane } from '../../../apps/control-plane/src/control-plane';
import { loadControlPlaneConfig } from '../../../apps/control-plane/src/config';
import { decodeDeltaDiscoveryRequest, decodeDiscoveryRequest, type XdsCallbacks } from '../../../apps/control-plane/src/xds';
import { parseBenchArgs } from './bench-cli';
import { BenchMesh, hubSpec } from './bench-mesh';
import { connectionWentAway, GrpcConnection, type GrpcStream, type StreamEnd } from './grpc-wire-client';
import { DeltaResponse, deltaDiscoveryRequestMessage, discoveryRequestMessage, SotwResponse } from './xds-wire';

/** The thread ids alive at start-up (Linux; empty elsewhere), read before anything could start libuv's pool (threadCpuSeconds). */
const STARTUP_THREADS: ReadonlySet<string> = new Set(taskIds());

const args = parseBenchArgs(
  {
    name: 'xds-fanout',
    allowNegative: true,
    summary:
      'Control-plane fan-out: the time from the etcd write of one change to `hub` until each affected ADS stream has its ' +
      'new version, against a bare grpc-js bidi-stream server pushing one small message per affected stream on the same etcd ' +
      'watch event (the floor), measured in the same run, ratio printed; next to it the first full push, bytes per change, each ' +
      "server's CPU-seconds per change, peak RSS and event-loop delay. Needs etcd. Exits non-zero only if a push is missing, " +
      'extra or stale.',
  },
  {
    profile: {
      type: 'string',
      default: 'envoy',
      help:
        'envoy (SotW sidecars: CDS+LDS, then EDS/RDS, ACKs), clusters (SotW, CDS only) or delta (the envoy subscriptions over ' +
        'Delta ADS), or several separated by commas (each runs against the floor and the control plane).',
    },
    smoke: {
      type: 'boolean',
      default: false,
      help: 'Seconds, tiny sizes, every profile: what `npm test` runs (src/xds-fanout.smoke.test.ts) so the tool cannot rot.',
    },
    services: { type: 'string', default: '10000', help: 'Services in the benchmark mesh (besides hub).' },
    proxies: { type: 'string', default: '5000', help: 'Simulated proxies, one ADS stream each.' },
    rounds: { type: 'string', default: '5', help: 'Changes of hub, each timed, per profile and server.' },
    'hub-every': { type: 'string', default: '3', help: 'Every n-th service declares hub as a dependency (the rest call their neighbour).' },
    connections: { type: 'string', default: '50', help: 'TCP connections the client process spreads its streams over.' },
    'connect-concurrency': {
      type: 'string',
      default: '0',
      help:
        "At most this many connections being set up at once (connected and not yet answered with the server's HTTP/2 " +
        'SETTINGS, i.e. not yet accepted), as a fleet arrives when its Envoys cannot all connect at once; the next ' +
        'connection (and its streams) opens as one is answered. 0: every connection at once, as before.',
    },
    'node-extensions': {
      type: 'string',
      default: '0',
      help:
        "Extensions in each simulated Envoy's node, as a real Envoy lists every extension compiled into it (an official build: " +
        'hundreds; the node then also carries locality, build version and client features, ~50 KB at 450). 0: the node is id, ' +
        'cluster and user agent name only (82 bytes), as this benchmark sent until 2026-12-07.',
    },
    'settle-ms': {
      type: 'string',
      default: '1500',
      help: 'How long to keep listening after the last affected stream got its push, to catch extra pushes.',
    },
    'warmup-rounds': {
      type: 'string',
      default: '1',
      help:
        'Untimed changes before the measured rounds, on both servers: the first change after the connection storm also runs ' +
        "the change path's code for the first time (V8 compiles it then). Before the storm the bench polls the control " +
        "plane's GET /readyz over HTTP until it answers 200, and asks it once more before the warm-up, as a deployment's " +
        'readiness probe does from its start and every few seconds after.',
    },
    'status-drain': {
      type: 'boolean',
      default: true,
      help:
        "Start each round only when the control plane has written the previous one's proxy statuses (its status " +
        "writer's backlog at 0, asked over the bench's channel to its process), so a round measures one change, not also " +
        "the last one's rate-limited status writes; --no-status-drain measures them overlapped.",
    },
    'debounce-ms': {
      type: 'string',
      default: '100',
      help: "The control plane's TRELLIS_XDS_DEBOUNCE_MS (its default: 100); 0 shows the cost without the deliberate hold-off.",
    },
    'fanout-slice-ms': {
      type: 'string',
      help: "The control plane's TRELLIS_XDS_FANOUT_SLICE_MS (its default: 20; 0: the whole fan-out in one event-loop turn).",
    },
    'max-connection-age-ms': {
      type: 'string',
      help:
        "The control plane's TRELLIS_GRPC_MAX_CONNECTION_AGE_MS (its default: 30 min ±10 %): a connection that old is sent " +
        'GOAWAY and cut after the grace; its simulated Envoys reconnect and re-subscribe.',
    },
    'max-connection-age-grace-ms': {
      type: 'string',
      help: "The control plane's TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS (its default: 10 s).",
    },
    'cpu-prof-dir': {
      type: 'string',
      help:
        "Write a V8 CPU profile of each server process, the floor's and the control plane's, into this directory (node " +
        "--cpu-prof), and beside each, marks-<pid>.json: when each first full push started and ended on the profile's clock " +
        '(microseconds), so the two profiles can be read for the push alone: node tools/bench/cpu-profile-owners.mjs --dir DIR ' +
        "splits each server's main thread in the push by owner (GC, translation, sessions, grpc-js's read and write paths, …).",
    },
    'trace-gc': {
      type: 'boolean',
      default: false,
      help:
        "Each process (server and clients) records its garbage collections (perf_hooks 'gc' entries, time-stamped on the " +
        "shared clock); per round the table lists those between the write and the last affected stream's push, with the " +
        "server's array-buffer and heap memory before the round.",
    },
    'trace-rounds': {
      type: 'boolean',
      default: false,
      help:
        "The control plane time-stamps one change's path on the shared clock (the watch's update, the model, the fan-out's " +
        'start and end, its first and last CDS written, the EDS answers and ACKs before the last affected stream had its ' +
        "push), with its process CPU at each; the floor its own (the watch's put, its first and last write, the end of that " +
        "turn, its HTTP/2 writes done, the ACKs), so each round shows where the two servers' paths part; with --cpu-prof-dir " +
        "the rounds' windows are written beside the profile " +
        '(rounds.json, CPU-profile clock) so a profile can be read for the rounds alone.',
    },
    'cp-node-options': {
      type: 'string',
      default: '',
      help: "node/V8 options for the control plane's process (e.g. '--trace-gc --max-semi-space-size=32').",
    },
    'cp-env': {
      type: 'string',
      default: '',
      help:
        "Environment variables for the control plane's process, 'NAME=value ...' (e.g. glibc's " +
        "'MALLOC_MMAP_THRESHOLD_=32768', with which freed large buffers go back to the system at once).",
    },
    'floor-node-options': { type: 'string', default: '', help: "node/V8 options for the floor's process." },
    'clients-node-options': {
      type: 'string',
      default: '',
      help:
        "node/V8 options for the simulated proxies' process, after its own young generation of at least 16 MB " +
        "(CLIENTS_V8_OPTIONS; '--min-semi-space-size=0' gives it V8's default back).",
    },
    'clients-window-bytes': {
      type: 'string',
      help:
        "The simulated Envoys' HTTP/2 flow-control windows, stream and connection (default: Envoy's 256 MiB); 0: HTTP/2's " +
        '64 KiB, which this benchmark used until 2026-12-07.',
    },
    floor: {
      type: 'string',
      default: 'process',
      help:
        "process: the floor's grpc-js server in its own process (the bare floor, the default). in-process (a diagnostic, " +
        "not the floor the table's ratios are judged by): the same server inside a control-plane process (started with " +
        '--cp-node-options and --cp-env, its model loaded, its watch, HTTP server and timers running, no proxy connected ' +
        "to it), so the floor's grpc-js work runs on the control plane's heap, JIT state and event loop; set against the " +
        "bare floor in another run, it separates what grpc-js costs in the control plane's process from Trellis's own work.",
    },
    'floor-heap-mib': {
      type: 'string',
      default: '0',
      help:
        "A diagnostic: about this many MiB of small live objects kept in the floor's process (either --floor), so its GC " +
        "marks and its heap grows as a control plane's holding its model and snapshots (~120 MiB live after the first " +
        'push at 10,000 / 5,000). 0: none.',
    },
    role: { type: 'string', internal: true, help: 'cp, floor or clients: be that process.' },
    'serve-floor': {
      type: 'boolean',
      default: false,
      internal: true,
      help: "For --role cp: serve the floor's streams beside the control plane (--floor in-process).",
    },
    'etcd-endpoints': { type: 'string', internal: true, help: "The orchestrator's etcd, for the server roles." },
    'etcd-prefix': { type: 'string', internal: true, help: 'The key prefix the server roles use.' },
    target: { type: 'string', internal: true, help: 'For --role clients: the server to connect to.' },
  },
);

if (args.smoke) {
  Object.assign(args, {
    services: '40',
    proxies: '30',
    rounds: '2',
    connections: '3',
    'settle-ms': '300',
    profile: 'clusters,envoy,delta',
  });
}
const PROFILES = ['clusters', 'envoy', 'delta'] as const;
type Profile = (typeof PROFILES)[number];
const profiles = args.profile!.split(',').map((p) => {
  if (!(PROFILES as readonly string[]).includes(p)) throw new Error(`--profile: ${p} is not one of ${PROFILES.join(', ')}`);
  return p as Profile;
});
const SERVICES = Number(args.services);
const PROXIES = Number(args.proxies);
const ROUNDS = Number(args.rounds);
const HUB_EVERY = Number(args['hub-every']);
const CONNECTIONS = Number(args.connections);
const CONNECT_CONCURRENCY = Number(args['connect-concurrency']);
if (!Number.isInteger(CONNECT_CONCURRENCY) || CONNECT_CONCURRENCY < 0)
  throw new Error(`--connect-concurrency: ${args['connect-concurrency']} is not a whole number of connections (0: no limit)`);
const NODE_EXTENSIONS = Number(args['node-extensions']);
const SETTLE_MS = Number(args['settle-ms']);
if (args.floor !== 'process' && args.floor !== 'in-process') throw new Error(`--floor: ${args.floor} is not process or in-process`);
/** --floor in-process: the floor's server runs in a control-plane process (a diagnostic; see the option's help). */
const FLOOR_IN_PROCESS = args.floor === 'in-process';
const FLOOR_NAME =
  (FLOOR_IN_PROCESS ? 'floor (grpc-js in a control-plane process)' : 'floor (bare grpc-js)') +
  (Number(args['floor-heap-mib']) > 0 ? ` + ${args['floor-heap-mib']} MiB kept` : '');
const WARMUP_ROUNDS = Number(args['warmup-rounds']);
/** Longest wait for the control plane's status backlog to drain before a round (200 records/s by default). */
const STATUS_DRAIN_TIMEOUT_MS = 120_000;
/** The types a profile's streams wait for before they count as connected. */
const typesOf = (profile: Profile): string[] =>
  profile === 'clusters'
    ? [TypeUrl.Cluster]
    : [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener, TypeUrl.RouteConfiguration];
const ROUND_TIMEOUT_MS = 60_000;
/**
 * Envoy's HTTP/2 flow-control windows, which its xDS client (envoy_grpc, over Envoy's own HTTP/2 codec) gets
 * when the xDS cluster leaves them unset, as Trellis's bootstrap does (`http2_protocol_options: {}`,
 * apps/control-plane/src/bootstrap/render-bootstrap.ts): Http2ProtocolOptions' initial_stream_window_size
 * "defaults to 268435456 (256 * 1024 * 1024)" and initial_connection_window_size "has the same
 * minimum/maximum/default" (Envoy's API reference, config.core.v3.Http2ProtocolOptions,
 * https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto, generated from
 * envoyproxy/data-plane-api envoy/config/core/v3/protocol.proto). grpc-js's default is
 * HTTP/2's 64 KiB, which made the server wait for WINDOW_UPDATEs on big responses where an Envoy would not.
 */
const ENVOY_HTTP2_WINDOW_BYTES = 256 * 1024 * 1024;
const CLIENTS_WINDOW_BYTES = Number(args['clients-window-bytes'] ?? ENVOY_HTTP2_WINDOW_BYTES);
/** How long the servers' idle CPU is measured before the rounds. */
const IDLE_MS = args.smoke ? 500 : 3_000;

// performance.timeOrigin is a getter that calls into the runtime; it does not change, so it is read once.
const TIME_ORIGIN = performance.timeOrigin;
const now = (): number => TIME_ORIGIN + performance.now();
const mesh = new BenchMesh(SERVICES, HUB_EVERY);

// ---- messages between the orchestrator and the clients process (IPC) ----
type ToClients = { type: 'arm' } | { type: 'collect' } | { type: 'close' } | GcQuery;
/** The GCs a process ran between two times on the shared clock (--trace-gc). */
interface GcQuery {
  type: 'gc';
  from: number;
  to: number;
}
interface GcEvent {
  /** Start on the shared clock, duration of the main thread's pause, and V8's kind. */
  at: number;
  ms: number;
  kind: 'scavenge' | 'mark-compact' | 'incremental' | 'weak';
}
interface GcReply {
  type: 'gc';
  events: GcEvent[];
  /** Memory at the time of the reply. */
  arrayBuffersMiB: number;
  heapUsedMiB: number;
}
type FromClients =
  | { type: 'connected'; ms: number; /** The clients process's CPU time until then. */ cpuSeconds: number }
  | { type: 'armed'; /** The clients process's CPU time so far. */ cpuSeconds: number }
  | { type: 'all-affected-received'; cpuSeconds: number; at: number }
  | GcReply
  | {
      type: 'round';
      arrivals: number[];
      missing: number;
      extraToAffected: number;
      toUnaffected: number;
      staleVersion: number;
      /** Responses and resource bytes received by all streams since `arm`. */
      responses: number;
      bytes: number;
      /** Streams reopened since `arm`, and since the clients started. */
      reconnects: number;
      reconnectsTotal: number;
    };
type ToServer =
  | { type: 'stats'; /** Noted on the CPU profile's clock (--cpu-prof-dir). */ mark?: 'push start' | 'push end' }
  | { type: 'cpu' }
  | { type: 'status backlog' }
  | GcQuery
  | { type: 'trace'; from: number; to: number };
/** One change's path in the control plane (--trace-rounds): shared-clock times and process CPU-ms at each. */
interface TraceMark {
  what: string;
  at: number;
  cpuMs: number;
}
type FromServer =
  | { type: 'ready'; grpcPort: number; httpPort?: number }
  /** Process CPU time so far, without resetting the event-loop delay that `stats` reports. */
  | { type: 'cpu'; cpuSeconds: number; /** Longest event-loop delay since the previous `cpu`. */ loopDelayMaxMs: number }
  | GcReply
  | { type: 'trace'; marks: TraceMark[]; counts: Record<string, number> }
  /** Proxy-status records waiting to be written (the status writer's backlog; the floor writes none). */
  | { type: 'status backlog'; records: number }
  | {
      type: 'stats';
      /** Process CPU time (user + system) so far. */
      cpuSeconds: number;
      /** CPU time by thread group (threadCpuSeconds), where the OS tells it (Linux). */
      threadCpuSeconds: ThreadCpu | undefined;
      /** Peak resident set so far. */
      maxRssMiB: number;
      /** The largest sampled resident set since the previous `stats`, and what it was made of then. */
      peakMemory: MemorySplit;
      /** Event-loop delay since the previous `stats`. */
      loopDelayP99Ms: number;
      loopDelayMaxMs: number;
    };

/** A sample of a server's memory, MiB: its resident set and what V8 tells of it (the rest is code and native memory). */
interface MemorySplit {
  rssMiB: number;
  /** V8's heap, as reserved (heapTotal). */
  heapMiB: number;
  /** Memory outside V8's heap that V8 knows of (external), array buffers (Node's Buffers: socket reads, messages) among it. */
  externalMiB: number;
  arrayBuffersMiB: number;
}

const MEMORY_SAMPLE_MS = 100;

/**
 * Samples this process's memory every 100 ms and keeps the sample with the largest resident set, so the table can say
 * when the peak came (the connection storm and first push, or the rounds) and what it was made of: V8's heap, memory
 * V8 knows of outside it, or the rest (code, native allocations, and freed memory the C allocator kept).
 */
function samplePeakMemory(): () => MemorySplit {
  const sample = (): MemorySplit => {
    const m = process.memoryUsage();
    return {
      rssMiB: m.rss / 2 ** 20,
      heapMiB: m.heapTotal / 2 ** 20,
      externalMiB: m.external / 2 ** 20,
      arrayBuffersMiB: m.arrayBuffers / 2 ** 20,
    };
  };
  let peak = sample();
  setInterval(() => {
    const s = sample();
    if (s.rssMiB > peak.rssMiB) peak = s;
  }, MEMORY_SAMPLE_MS).unref();
  // The peak since the previous call.
  return () => {
    const s = sample();
    const taken = s.rssMiB > peak.rssMiB ? s : peak;
    peak = s;
    return taken;
  };
}

/** Time-stamped GCs of this process (--trace-gc), answered per time window. */
function recordGc(): (query: GcQuery) => GcReply {
  const events: GcEvent[] = [];
  if (args['trace-gc']) {
    const kinds: Record<number, GcEvent['kind']> = {
      [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
      [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
      [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
      [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak',
    };
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const kind = kinds[(entry as unknown as { detail?: { kind?: number } }).detail?.kind ?? -1];
        if (kind) events.push({ at: performance.timeOrigin + entry.startTime, ms: entry.duration, kind });
      }
    }).observe({ entryTypes: ['gc'] });
  }
  return ({ from, to }) => {
    const memory = process.memoryUsage();
    return {
      type: 'gc',
      events: events.filter((e) => e.at >= from && e.at <= to),
      arrayBuffersMiB: memory.arrayBuffers / 2 ** 20,
      heapUsedMiB: memory.heapUsed / 2 ** 20,
    };
  };
}

/** The xDS types the round traces name, with their short names. */
const TRACED_TYPES: [string, string][] = [
  [TypeUrl.Cluster, 'CDS'],
  [TypeUrl.ClusterLoadAssignment, 'EDS'],
  [TypeUrl.Listener, 'LDS'],
  [TypeUrl.RouteConfiguration, 'RDS'],
];

/** A server's marks along each change's path (--trace-rounds), answered per time window. */
class RoundTrace {
  private readonly marks: TraceMark[] = [];
  /** The rounds' windows (from each `cpu` request to the next) on the CPU profile's clock, microseconds. */
  readonly windows: number[] = [];

  mark(what: string, withCpu = true, at = now()): void {
    let cpuMs = 0;
    if (withCpu) {
      const cpu = process.cpuUsage();
      cpuMs = (cpu.user + cpu.system) / 1000;
    }
    this.marks.push({ what, at, cpuMs });
  }

  window(): void {
    this.windows.push(Number(process.hrtime.bigint() / 1000n));
  }

  between(from: number, to: number): Extract<FromServer, { type: 'trace' }> {
    const cut = this.marks.findIndex((m) => m.at >= from);
    this.marks.splice(0, cut < 0 ? this.marks.length : cut);
    const marks = this.marks.filter((m) => m.at <= to);
    const counts: Record<string, number> = {};
    for (const m of marks) counts[m.what] = (counts[m.what] ?? 0) + 1;
    // Only the first and last of each kind go back.
    const kept = marks.filter(
      (m, i) => marks.findIndex((x) => x.what === m.what) === i || marks.findLastIndex((x) => x.what === m.what) === i,
    );
    return { type: 'trace', marks: kept, counts };
  }
}

/** Times of the orchestrator's marks on the CPU profile's clock, microseconds (--cpu-prof-dir). */
const profileMarks: Record<string, number[]> = {};

/** Writes the marks beside the profile the process writes when it exits (--cpu-prof-dir). */
function writeProfileMarks(): void {
  if (args['cpu-prof-dir']) writeFileSync(join(args['cpu-prof-dir'], `marks-${process.pid}.json`), JSON.stringify(profileMarks));
}

/** Answers the orchestrator's `stats`, `cpu`, `gc` and `status backlog` requests (server roles). */
function serveStats(trace?: RoundTrace, statusBacklog: () => number = () => 0): void {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const roundDelay = monitorEventLoopDelay({ resolution: 10 });
  roundDelay.enable();
  const gcIn = recordGc();
  const peakMemory = samplePeakMemory();
  process.on('message', (message: ToServer) => {
    if (message.type === 'gc') {
      tell(gcIn(message));
      return;
    }
    if (message.type === 'trace') {
      if (trace) tell(trace.between(message.from, message.to));
      return;
    }
    if (message.type === 'status backlog') {
      tell({ type: 'status backlog', records: statusBacklog() });
      return;
    }
    if (message.type === 'cpu') {
      trace?.window();
      trace?.mark('cpu request');
      tell({ type: 'cpu', cpuSeconds: cpuSecondsSince({ user: 0, system: 0 }), loopDelayMaxMs: roundDelay.max / 1e6 });
      roundDelay.reset();
      return;
    }
    if (message.type !== 'stats') return;
    if (message.mark) (profileMarks[message.mark] ??= []).push(Number(process.hrtime.bigint() / 1000n));
    const cpu = process.cpuUsage();
    tell({
      type: 'stats',
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      threadCpuSeconds: threadCpuSeconds(),
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
      peakMemory: peakMemory(),
      loopDelayP99Ms: delay.percentile(99) / 1e6,
      loopDelayMaxMs: delay.max / 1e6,
    });
    delay.reset();
  });
}

// ---- role: control plane ----
const traceCallbacks: XdsCallbacks = {};

async function controlPlaneRole(): Promise<void> {
  const config = loadControlPlaneConfig({
    TRELLIS_ETCD_ENDPOINTS: args['etcd-endpoints'],
    TRELLIS_ETCD_PREFIX: args['etcd-prefix'],
    TRELLIS_HOST: '127.0.0.1',
    TRELLIS_XDS_PORT: '0',
    TRELLIS_HTTP_PORT: '0',
    TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: 'true',
    TRELLIS_CONTROL_PLANE_ID: 'cp-bench',
    TRELLIS_XDS_DEBOUNCE_MS: args['debounce-ms'],
    ...(args['fanout-slice-ms'] === undefined ? {} : { TRELLIS_XDS_FANOUT_SLICE_MS: args['fanout-slice-ms'] }),
    ...(args['max-connection-age-ms'] === undefined ? {} : { TRELLIS_GRPC_MAX_CONNECTION_AGE_MS: args['max-connection-age-ms'] }),
    ...(args['max-connection-age-grace-ms'] === undefined
      ? {}
      : { TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS: args['max-connection-age-grace-ms'] }),
    // The clients multiplex their streams over --connections (a real Envoy opens one connection each);
    // the floor's grpc-js server takes any number per connection.
    TRELLIS_XDS_MAX_STREAMS_PER_CONNECTION: String(Math.min(1000, Math.ceil(PROXIES / Math.max(1, Math.min(CONNECTIONS, PROXIES))))),
  });
  const etcd = connectEtcd(etcdOptionsFromEnv(config));
  const cp = await startControlPlane({
    config,
    etcd,
    layout: new KeyLayout(config.TRELLIS_ETCD_PREFIX),
    logger: createLogger('control-plane', 'warn'),
    // Filled in by --trace-rounds once the control plane runs.
    callbacks: traceCallbacks,
  });
  await cp.watcher.whenReady();
  while (!cp.cache.ready) await sleep(50);
  if (args['serve-floor']) {
    // --floor in-process: this process is the floor phase's server. The control plane runs as it would (its model,
    // its etcd watch, its HTTP server and timers), no proxy connects to it, and the floor's server beside it takes
    // the streams, on the same heap, the same JIT state and the same event loop.
    await serveFloorUntilTerminated();
  } else {
    const trace = args['trace-rounds'] ? traceControlPlane(cp) : undefined;
    serveStats(trace, () => cp.statusWriter.backlog);
    tell({ type: 'ready', grpcPort: cp.xdsPort, httpPort: cp.httpPort } satisfies FromServer);
    await untilTerminated();
    if (trace && args['cpu-prof-dir'])
      writeFileSync(join(args['cpu-prof-dir'], `rounds-${process.pid}.json`), JSON.stringify(trace.windows));
  }
  writeProfileMarks();
  await cp.close();
  etcd.close();
  // Exit now rather than when the last handle closes (a --cpu-prof profile is written on exit).
  process.exit(0);
}

/** Marks along the change path: the watch's update, the cache's fan-out, each response written and each ACK read. */
function traceControlPlane(cp: Awaited<ReturnType<typeof startControlPlane>>): RoundTrace {
  const trace = new RoundTrace();
  cp.watcher.prependListener('update', () => trace.mark('watch update'));
  const setModel = cp.cache.setModel.bind(cp.cache);
  cp.cache.setModel = (...a) => {
    trace.mark('fan-out start');
    const update = setModel(...a);
    trace.mark('fan-out first turn end');
    // HTTP/2 sends what the turn wrote in the next check phase (native immediates), and grpc-js's write callbacks run
    // there too, before the JS immediates: this one runs once the sockets have the turn's responses and the callbacks ran.
    setImmediate(() => trace.mark('HTTP/2 writes done'));
    void update.settled.then(() => trace.mark('fan-out settled'));
    return update;
  };
  // The labels built once: the marks run inside the path they time, once per response and ACK.
  const written = new Map(TRACED_TYPES.map(([typeUrl, short]) => [typeUrl, `${short} written`]));
  const acked = new Map(TRACED_TYPES.map(([typeUrl, short]) => [typeUrl, `${short} ACK read`]));
  // Process CPU only at the first CDS of a round (reading it costs ~10 us, too much to do per response).
  let lastCds = 0;
  traceCallbacks.onResponse = (_stream, response) => {
    const at = now();
    const cds = response.typeUrl === TypeUrl.Cluster;
    trace.mark(written.get(response.typeUrl) ?? `${response.typeUrl} written`, cds && at - lastCds > 200, at);
    if (cds) lastCds = at;
  };
  traceCallbacks.onAck = (_stream, typeUrl) => trace.mark(acked.get(typeUrl) ?? `${typeUrl} ACK read`, false);
  return trace;
}

// ---- role: floor ----
async function floorRole(): Promise<void> {
  await serveFloorUntilTerminated();
  writeProfileMarks();
  process.exit(0);
}

/** The floor's server, ready to the orchestrator, until it is told to stop (its own process, or --floor in-process). */
async function serveFloorUntilTerminated(): Promise<void> {
  const trace = args['trace-rounds'] ? new RoundTrace() : undefined;
  const floor = await startFloor(trace);
  floorBallast.push(heapBallast(Number(args['floor-heap-mib'])));
  serveStats(trace);
  tell({ type: 'ready', grpcPort: floor.port } satisfies FromServer);
  await untilTerminated();
  await floor.close();
}

/**
 * The floor's server: a bare grpc-js ADS server on its own etcd client, answering each stream's first request of each
 * type with an empty response and each put of `hub` with one small response to every affected stream. Its own
 * process (--role floor), or beside a running control plane in the control plane's process (--floor in-process).
 */
async function startFloor(trace: RoundTrace | undefined): Promise<{ port: number; close: () => Promise<void> }> {
  const layout = new KeyLayout(args['etcd-prefix']!);
  const etcd = connectEtcd({ endpoints: args['etcd-endpoints']!.split(',') });
  type Sotw = ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;
  type Delta = ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;
  const affectedSotw = new Set<Sotw>();
  const affectedDelta = new Set<Delta>();
  let nonce = 0;
  // The same marks as the control plane's where the floor does the same (trace): its path is the yardstick for the other's.
  // Channelz off, as the control plane runs: the floor is the least a grpc-js server can spend.
  const server = new Server({ 'grpc.enable_channelz': 0 });
  // Requests read as the control plane reads them (wire.ts): of a node only what is used (here its cluster), not an
  // Envoy's list of extensions (--node-extensions), which no server needs to turn into objects.
  const service = {
    ...AggregatedDiscoveryServiceService,
    streamAggregatedResources: {
      ...AggregatedDiscoveryServiceService.streamAggregatedResources,
      requestDeserialize: decodeDiscoveryRequest,
    },
    deltaAggregatedResources: {
      ...AggregatedDiscoveryServiceService.deltaAggregatedResources,
      requestDeserialize: decodeDeltaDiscoveryRequest,
    },
  };
  server.addService(service, {
    streamAggregatedResources: (call: Sotw) => {
      call.on('data', (request: DiscoveryRequest) => {
        // A subscription's first request carries no nonce; later ones are ACKs.
        if (request.responseNonce !== '') {
          if (request.typeUrl === TypeUrl.Cluster) trace?.mark('CDS ACK read', false);
          return;
        }
        if (request.node && mesh.callsHub(request.node.cluster)) affectedSotw.add(call);
        call.write(DiscoveryResponse.fromPartial({ versionInfo: '0', typeUrl: request.typeUrl, nonce: String(++nonce) }));
      });
      call.on('error', () => affectedSotw.delete(call));
      call.on('end', () => {
        affectedSotw.delete(call);
        call.end();
      });
    },
    deltaAggregatedResources: (call: Delta) => {
      call.on('data', (request: DeltaDiscoveryRequest) => {
        if (request.responseNonce !== '') {
          if (request.typeUrl === TypeUrl.Cluster) trace?.mark('CDS ACK read', false);
          return;
        }
        if (request.node && mesh.callsHub(request.node.cluster)) affectedDelta.add(call);
        call.write(DeltaDiscoveryResponse.fromPartial({ systemVersionInfo: '0', typeUrl: request.typeUrl, nonce: String(++nonce) }));
      });
      call.on('error', () => affectedDelta.delete(call));
      call.on('end', () => {
        affectedDelta.delete(call);
        call.end();
      });
    },
  });
  // Bound as the control plane's xDS port is (its listen backlog, TRELLIS_GRPC_LISTEN_BACKLOG's default): with grpc-js's
  // bindAsync (Node's 511) the floor's own storm was reset at --connections 5000 with real-sized nodes.
  const port = await bindGrpcServer(server, '127.0.0.1', 0);
  const watcher = await etcd.watch().key(layout.service('hub')).create();
  watcher.on('put', (kv) => {
    trace?.mark('watch update');
    const version = kv.mod_revision;
    const sotw = DiscoveryResponse.fromPartial({ versionInfo: version, typeUrl: TypeUrl.Cluster, nonce: String(++nonce) });
    let first = true;
    for (const call of affectedSotw) {
      call.write(sotw);
      trace?.mark('CDS written', first);
      first = false;
    }
    const delta = DeltaDiscoveryResponse.fromPartial({ systemVersionInfo: version, typeUrl: TypeUrl.Cluster, nonce: String(++nonce) });
    for (const call of affectedDelta) {
      call.write(delta);
      trace?.mark('CDS written', first);
      first = false;
    }
    if (!trace) return;
    trace.mark('writes turn end');
    // As for the control plane's fan-out: HTTP/2 sends the turn's writes in the next check phase, before this runs.
    setImmediate(() => trace.mark('HTTP/2 writes done'));
  });
  return {
    port,
    close: async () => {
      await watcher.cancel();
      server.forceShutdown();
      etcd.close();
    },
  };
}

/**
 * --floor-heap-mib: about this many MiB of small live objects kept in the floor's process for its whole life, so its
 * garbage collector marks and its heap limit grows as in a process holding a control plane's model and snapshots.
 * Objects of a few fields with a string each (a model's shape), linked from Maps of 1,000 (one large array would be
 * marked as one object).
 */
/** What --floor-heap-mib keeps alive for the process's life. */
const floorBallast: unknown[] = [];
function heapBallast(mib: number): Map<number, unknown>[] {
  if (!Number.isFinite(mib) || mib < 0) throw new Error(`--floor-heap-mib: ${args['floor-heap-mib']} is not a size in MiB`);
  // ~125 bytes an entry (measured: the object of 5 fields, its string, the Map's slot).
  const entries = Math.round((mib * 2 ** 20) / 125);
  const maps: Map<number, unknown>[] = [];
  for (let i = 0; i < entries; i++) {
    if (i % 1000 === 0) maps.push(new Map());
    maps.at(-1)!.set(i, { name: `svc-${i}`, version: i, weight: i % 100, port: 8080, enabled: true });
  }
  return maps;
}

// ---- role: clients ----

interface Proxy {
  affected: boolean;
  /** Latest version per type (SotW version_info, Delta system_version_info). */
  versions: Map<string, string>;
  /** Cluster versions before the round, for the "got a new version" check. */
  clusterVersionBefore: string;
  /**
   * Responses since the round was armed, and when the first came: two numbers per proxy, not an array made anew for
   * each of 5,000 proxies every round (the clients process's allocation decides its GC, and with it slow rounds).
   */
  arrivals: number;
  firstArrivalAt: number;
  answered: Set<string>;
  /** Streams opened again after their connection went away (the server's GOAWAY at its max connection age). */
  reconnects: number;
}

/** One stream in the profile's shape; calls `received` for every response with its resource bytes. */
type OpenStream = (proxy: Proxy, node: Node, received: (typeUrl: string, bytes: number) => void) => void;

/** What a sidecar subscribes to after a type's answer: the endpoints of its clusters, the routes of its listeners. */
const FOLLOWS = new Map<string, string>([
  [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment],
  [TypeUrl.Listener, TypeUrl.RouteConfiguration],
]);

/** Envoy's xDS stream retry (GrpcStream: RetryInitialDelayMs 500, RetryMaxDelayMs 30000, jittered exponential). */
const RETRY_INITIAL_DELAY_MS = 500;
const RETRY_MAX_DELAY_MS = 30_000;

const describeEnd = (end: StreamEnd): string =>
  end.status !== undefined
    ? `gRPC status ${end.status} ${end.details}`
    : `${end.connectionGone ? 'cut with its connection' : 'reset'}${end.afterGoaway ? " after the server's GOAWAY" : ''}, ` +
      `HTTP/2 code ${end.rstCode}${end.error ? ` (${end.error.message})` : ''}`;

/**
 * Keeps a proxy's xDS stream open as Envoy does: a stream whose connection went away (connectionWentAway: the
 * server's GOAWAY at its max connection age, then UNAVAILABLE or the cut; a dropped connection) is opened again on
 * the same connection (a new one if it is gone) after a jittered exponential backoff, reset by a response, and
 * `subscribe(stream, true)` re-subscribes on it. Any other end stops the process.
 */
function keepOpen(
  proxy: Proxy,
  node: Node,
  connection: GrpcConnection,
  path: string,
  onResponse: (message: Buffer, stream: GrpcStream) => void,
  subscribe: (stream: GrpcStream, resubscribe: boolean) => void,
): void {
  let failures = 0;
  const connect = (resubscribe: boolean): void => {
    const stream = connection.open(
      path,
      (message) => {
        failures = 0;
        onResponse(message, stream);
      },
      (end) => {
        if (!connectionWentAway(end)) {
          console.error(`${node.id}: stream ended: ${describeEnd(end)}`);
          process.exit(2);
        }
        proxy.reconnects++;
        const ceiling = Math.min(RETRY_MAX_DELAY_MS, RETRY_INITIAL_DELAY_MS * 2 ** failures++);
        setTimeout(() => connect(true), Math.random() * ceiling);
      },
    );
    subscribe(stream, resubscribe);
  };
  connect(false);
}

/** The part of an Envoy's node that is the same on every proxy of a build (encoded once; a node is id and cluster plus this). */
let envoyNodeTail: Uint8Array | undefined;

/**
 * A proxy's node as its first request carries it: with --node-extensions, what an Envoy adds (locality, build version,
 * its extensions with the config types each takes, client features); protobuf merges the two encoded halves.
 * Built when a stream opens, not kept: at 450 extensions the node is ~50 KB, 250 MB for 5,000 proxies.
 */
function nodeBytesOf(node: Node): Uint8Array {
  const own = Node.encode(node).finish();
  if (NODE_EXTENSIONS === 0) return own;
  envoyNodeTail ??= Node.encode(Node.fromPartial(envoyBuildNodeFields(NODE_EXTENSIONS))).finish();
  return Buffer.concat([own, envoyNodeTail]);
}

/** Whether two sorted name lists are the same. */
function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const SOTW_PATH = AggregatedDiscoveryServiceService.streamAggregatedResources.path;
const DELTA_PATH = AggregatedDiscoveryServiceService.deltaAggregatedResources.path;

/** Every response of the process is read into these, one at a time (a stream's handler is done with it before the next). */
const sotwResponse = new SotwResponse();
const deltaResponse = new DeltaResponse();

const sotwStream =
  (profile: 'clusters' | 'envoy', connectionFor: () => GrpcConnection): OpenStream =>
  (proxy, node, received) => {
    // One connection per proxy, as an Envoy has: a reconnect opens its stream on the same connection.
    const connection = connectionFor();
    const subscribed = new Map<string, string[]>();
    const last = new Map<string, { version: string; nonce: string }>();
    /** Types re-requested on a new stream whose answer has not come: an answer with the version held is not a push. */
    const resubscribed = new Set<string>();
    const request = (stream: GrpcStream, typeUrl: string, names: string[], withNode = false): void => {
      const held = last.get(typeUrl);
      stream.write(
        discoveryRequestMessage({
          node: withNode ? nodeBytesOf(node) : undefined,
          typeUrl,
          resourceNames: names,
          versionInfo: held?.version ?? '',
          responseNonce: held?.nonce ?? '',
        }),
      );
    };
    const onResponse = (message: Buffer, stream: GrpcStream): void => {
      const response = sotwResponse.read(message);
      const typeUrl = response.typeUrl;
      // Then what an Envoy sidecar asks next: endpoints of the clusters, routes of the listeners
      // (Trellis names a listener's route configuration after it), and after new clusters the endpoints again.
      const follow = profile === 'envoy' ? FOLLOWS.get(typeUrl) : undefined;
      const names = follow ? response.names() : undefined;
      const resourceBytes = response.resourceBytes;
      const held = last.get(typeUrl);
      const resent = resubscribed.delete(typeUrl) && held?.version === response.versionInfo;
      // What a proxy holds lives from one change to the next, so V8 moves it to the old generation; a string or list
      // equal to the one held is dropped young instead of replacing it (a replaced one is old garbage: mark-compacts).
      if (held) {
        if (held.version !== response.versionInfo) held.version = response.versionInfo;
        held.nonce = response.nonce;
      } else {
        last.set(typeUrl, { version: response.versionInfo, nonce: response.nonce });
      }
      if (proxy.versions.get(typeUrl) !== response.versionInfo) proxy.versions.set(typeUrl, response.versionInfo);
      // ACK every response, as Envoy does.
      request(stream, typeUrl, subscribed.get(typeUrl) ?? []);
      // What the proxy held already, answering its re-subscription: nothing changed, so Envoy re-creates nothing.
      if (resent) return;
      received(typeUrl, resourceBytes);
      if (!follow || !names) return;
      const before = subscribed.get(follow);
      const same = before !== undefined && sameNames(before, names);
      if (same && follow !== TypeUrl.ClusterLoadAssignment) return;
      if (!same) subscribed.set(follow, names);
      resubscribed.delete(follow);
      request(stream, follow, same ? before : names);
    };
    keepOpen(proxy, node, connection, SOTW_PATH, onResponse, (stream, resubscribe) => {
      if (resubscribe) {
        // A new stream: every subscription again, with the versions held and no nonce (nonces belong to a stream).
        let first = true;
        for (const [typeUrl, names] of subscribed) {
          const held = last.get(typeUrl);
          if (held) held.nonce = '';
          resubscribed.add(typeUrl);
          request(stream, typeUrl, names, first);
          first = false;
        }
      } else {
        subscribed.set(TypeUrl.Cluster, []);
        request(stream, TypeUrl.Cluster, [], true);
        if (profile === 'envoy') {
          subscribed.set(TypeUrl.Listener, []);
          request(stream, TypeUrl.Listener, []);
        }
      }
    });
  };

const deltaStream =
  (connectionFor: () => GrpcConnection): OpenStream =>
  (proxy, node, received) => {
    const connection = connectionFor();
    /** Names of the endpoints and routes subscribed to (clusters and listeners are wildcard subscriptions). */
    const subscribed = new Map<string, Set<string>>();
    /** The version of every resource held, per type: what a new stream's requests tell the server. */
    const held = new Map<string, Map<string, string>>();
    const resubscribed = new Set<string>();
    const onResponse = (message: Buffer, stream: GrpcStream): void => {
      const response = deltaResponse.read(message);
      const typeUrl = response.typeUrl;
      let versions = held.get(typeUrl);
      if (!versions) held.set(typeUrl, (versions = new Map()));
      const resent =
        resubscribed.delete(typeUrl) &&
        response.names.every((name, i) => versions.get(name) === response.versions[i]) &&
        response.removed.every((name) => !versions.has(name));
      // As for SotW: a version equal to the one held is not stored again (what is held is old-generation memory).
      for (let i = 0; i < response.names.length; i++) {
        const name = response.names[i]!;
        if (versions.get(name) !== response.versions[i]) versions.set(name, response.versions[i]!);
      }
      for (const name of response.removed) versions.delete(name);
      if (proxy.versions.get(typeUrl) !== response.systemVersionInfo) proxy.versions.set(typeUrl, response.systemVersionInfo);
      // Subscribe to the endpoints and routes of new clusters and listeners (the server resends endpoints of re-created clusters itself).
      const follow = FOLLOWS.get(typeUrl);
      const before = follow ? subscribed.get(follow) : undefined;
      const added = follow ? response.names.filter((name) => !before?.has(name)) : [];
      const resourceBytes = response.resourceBytes;
      stream.write(deltaDiscoveryRequestMessage({ typeUrl, responseNonce: response.nonce }));
      // The server's first answer on a new stream, with nothing the proxy did not hold: not a push.
      if (resent) return;
      received(typeUrl, resourceBytes);
      if (!follow) return;
      let names = before;
      const first = !names;
      if (!names) subscribed.set(follow, (names = new Set()));
      for (const name of added) names.add(name);
      if (first || added.length > 0) {
        resubscribed.delete(follow);
        stream.write(deltaDiscoveryRequestMessage({ typeUrl: follow, resourceNamesSubscribe: added }));
      }
    };
    keepOpen(proxy, node, connection, DELTA_PATH, onResponse, (stream, resubscribe) => {
      if (resubscribe) {
        // A new stream: each subscription again with the versions held, so the server sends only what differs.
        let first = true;
        for (const typeUrl of [TypeUrl.Cluster, TypeUrl.Listener, ...subscribed.keys()]) {
          resubscribed.add(typeUrl);
          stream.write(
            deltaDiscoveryRequestMessage({
              node: first ? nodeBytesOf(node) : undefined,
              typeUrl,
              resourceNamesSubscribe: subscribed.get(typeUrl),
              initialResourceVersions: held.get(typeUrl),
            }),
          );
          first = false;
        }
      } else {
        stream.write(deltaDiscoveryRequestMessage({ node: nodeBytesOf(node), typeUrl: TypeUrl.Cluster }));
        stream.write(deltaDiscoveryRequestMessage({ typeUrl: TypeUrl.Listener }));
      }
    });
  };

async function clientsRole(): Promise<void> {
  const target = args.target!;
  const profile = args.profile as Profile;
  // One HTTP/2 connection each, with Envoy's flow-control windows (or HTTP/2's default with --clients-window-bytes 0).
  const connections = Array.from(
    { length: Math.max(1, Math.min(CONNECTIONS, PROXIES)) },
    () => new GrpcConnection(target, CLIENTS_WINDOW_BYTES),
  );
  let nextConnection = 0;
  const connectionFor = (): GrpcConnection => connections[nextConnection++ % connections.length]!;
  const open = profile === 'delta' ? deltaStream(connectionFor) : sotwStream(profile, connectionFor);
  const connectTypes = typesOf(profile);
  const proxies: Proxy[] = [];
  let armed = false;
  let connected = 0;
  let affectedReceived = 0;
  let responses = 0;
  let bytes = 0;
  const affectedCount = mesh.affectedProxies(PROXIES);
  const started = now();
  const cpuAtStart = process.cpuUsage();
  const openProxy = (p: number): void => {
    const service = mesh.proxyService(p);
    const proxy: Proxy = {
      affected: mesh.callsHub(service),
      versions: new Map(),
      clusterVersionBefore: '',
      arrivals: 0,
      firstArrivalAt: 0,
      answered: new Set(),
      reconnects: 0,
    };
    proxies.push(proxy);
    const node = Node.fromPartial({ id: `${service}-${p}`, cluster: service, userAgentName: 'envoy' });
    open(proxy, node, (typeUrl, size) => {
      const at = now();
      if (proxy.answered.size < connectTypes.length) {
        proxy.answered.add(typeUrl);
        if (proxy.answered.size === connectTypes.length && ++connected === PROXIES)
          tell({ type: 'connected', ms: now() - started, cpuSeconds: cpuSecondsSince(cpuAtStart) } satisfies FromClients);
        return;
      }
      if (!armed) return;
      responses++;
      bytes += size;
      if (proxy.arrivals++ === 0) proxy.firstArrivalAt = at;
      if (proxy.affected && proxy.arrivals === 1 && ++affectedReceived === affectedCount)
        tell({ type: 'all-affected-received', cpuSeconds: cpuSecondsSince({ user: 0, system: 0 }), at } satisfies FromClients);
    });
  };
  // Proxy p's stream is on connection p mod C (connectionFor's round robin, opened in order).
  if (CONNECT_CONCURRENCY === 0) {
    for (let p = 0; p < PROXIES; p++) openProxy(p);
  } else {
    let next = 0;
    let settingUp = 0;
    const openMore = (): void => {
      while (next < PROXIES && settingUp < CONNECT_CONCURRENCY) {
        const connection = connections[next % connections.length]!;
        const opensConnection = !connection.isOpen();
        openProxy(next++);
        if (!opensConnection) continue;
        settingUp++;
        connection.whenAnswered(() => {
          settingUp--;
          openMore();
        });
      }
    };
    openMore();
  }
  const reconnects = (): number => proxies.reduce((sum, proxy) => sum + proxy.reconnects, 0);
  let reconnectsAtArm = 0;
  const gcIn = recordGc();
  // The orchestrator is gone (however it ended): nobody to report to, and the streams would keep the process alive.
  process.once('disconnect', () => process.exit(1));
  process.on('message', (message: ToClients) => {
    if (message.type === 'gc') {
      tell(gcIn(message));
    } else if (message.type === 'arm') {
      for (const proxy of proxies) {
        proxy.arrivals = 0;
        proxy.clusterVersionBefore = proxy.versions.get(TypeUrl.Cluster) ?? '';
      }
      affectedReceived = 0;
      responses = 0;
      bytes = 0;
      reconnectsAtArm = reconnects();
      armed = true;
      tell({ type: 'armed', cpuSeconds: cpuSecondsSince({ user: 0, system: 0 }) } satisfies FromClients);
    } else if (message.type === 'collect') {
      armed = false;
      const result: Extract<FromClients, { type: 'round' }> = {
        type: 'round',
        arrivals: [],
        missing: 0,
        extraToAffected: 0,
        toUnaffected: 0,
        staleVersion: 0,
        responses,
        bytes,
        reconnects: 0,
        reconnectsTotal: reconnects(),
      };
      result.reconnects = result.reconnectsTotal - reconnectsAtArm;
      for (const proxy of proxies) {
        if (!proxy.affected) {
          result.toUnaffected += proxy.arrivals;
          continue;
        }
        if (proxy.arrivals === 0) {
          result.missing++;
          continue;
        }
        result.arrivals.push(proxy.firstArrivalAt);
        // The clusters profile gets exactly one response; a sidecar also gets the endpoints of its re-created cluster.
        if (profile === 'clusters') result.extraToAffected += proxy.arrivals - 1;
        if (proxy.versions.get(TypeUrl.Cluster) === proxy.clusterVersionBefore) result.staleVersion++;
      }
      tell(result);
    } else {
      for (const connection of connections) connection.close();
      process.exit(0);
    }
  });
}

// ---- orchestrator ----
/**
 * CPU-seconds from just before the write until every affected stream had its push: the
 * server's, the clients process's, and the rest of the machine's (every core's busy time
 * minus those two: etcd, the orchestrator and whatever else runs on the machine). A
 * round whose latency grew while the server's CPU did not waited for a core.
 */
interface PropagationCpu {
  server: number;
  clients: number;
  others: number;
}

/** What each process's GCs did from the write until every affected stream had its push (--trace-gc). */
interface PropagationGc {
  server: GcEvent[];
  clients: GcEvent[];
  /** The server's memory just before the write, and once every affected stream had its push. */
  serverBefore: Omit<GcReply, 'type' | 'events'>;
  serverReached: Omit<GcReply, 'type' | 'events'>;
  serverLoopDelayMaxMs: number;
}

interface RoundResult {
  latenciesMs: number[];
  cpu?: PropagationCpu;
  gc?: PropagationGc;
  missing: number;
  extraToAffected: number;
  toUnaffected: number;
  staleVersion: number;
  responses: number;
  bytes: number;
  /** Streams reopened during the round (after the server's GOAWAY at its max connection age). */
  reconnects: number;
}

interface PhaseResult {
  name: string;
  /** Streams reopened from the clients' start to the last round's end. */
  reconnects: number;
  connectMs: number;
  /** CPU time of the server, and of the clients process, from the clients' start to the last stream's first full push. */
  connectServerCpuSeconds: number;
  /** The same split by the server's threads (undefined where the OS does not tell). */
  connectServerThreadCpuSeconds: ThreadCpu | undefined;
  connectClientCpuSeconds: number;
  rounds: RoundResult[];
  /** Server process CPU-seconds spent during the rounds, per round (one change each). */
  cpuSecondsPerChange: number;
  /** What the server spends per round's duration when nothing changes (measured just before the rounds). */
  idleCpuSecondsPerChange: number;
  /** The server's CPU-ms per second when nothing changes: idleCpuSecondsPerChange is this times secondsPerChange. */
  idleCpuMsPerSecond: number;
  /** Wall time per round: the change, the settle time and (control plane) the wait for its status writes. */
  secondsPerChange: number;
  /** Server peak RSS by the end of the rounds (includes the first push). */
  maxRssMiB: number;
  /** The largest sampled RSS from the clients' start to the last stream's first full push (the connection storm). */
  connectPeakMemory: MemorySplit;
  /** The largest sampled RSS after that, to the end of the rounds. */
  roundsPeakMemory: MemorySplit;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** Control plane only: rebuilds during the rounds and their mean duration. */
  rebuild?: { count: number; meanMs: number };
  /** Every GC of the server and of the clients process over the rounds (--trace-gc). */
  gc?: { server: GcEvent[]; clients: GcEvent[] };
}

class Child {
  private readonly inbox: unknown[] = [];
  private readonly waiters: ((m: unknown) => void)[] = [];
  readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    readonly process: ChildProcess,
  ) {
    process.on('message', (m) => {
      const waiter = this.waiters.shift();
      if (waiter) waiter(m);
      else this.inbox.push(m);
    });
    // A message sent as it exits fails after the send returned: not a crash of the orchestrator (which would leave the
    // servers it started running), the wait for the answer fails, naming the exit.
    process.on('error', (err) => console.error(`${name}: ${err.message}`));
    this.exited = new Promise((resolve) => process.once('exit', resolve));
  }

  static fork(name: string, roleArgs: string[], execArgv: string[] = [], env: Record<string, string> = {}): Child {
    return new Child(
      name,
      fork(process.argv[1]!, roleArgs, {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        execArgv: [...process.execArgv, ...execArgv],
        env: { ...process.env, ...env },
      }),
    );
  }

  send(message: ToClients | ToServer): void {
    if (!this.process.connected)
      throw new Error(`${this.name} exited (${this.process.exitCode ?? this.process.signalCode ?? 'its channel closed'})`);
    this.process.send(message);
  }

  /** The next message of `type`, failing if the process exits or `timeoutMs` passes first. */
  async next<T extends { type: string }>(type: T['type'], timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = this.inbox.shift() ?? (await this.receive(deadline - Date.now()));
      if (message === TIMEOUT) throw new Error(`${this.name}: no '${type}' within ${timeoutMs} ms`);
      if ((message as { type: string }).type === type) return message as T;
    }
  }

  /** The next message to arrive; a timed-out wait takes its waiter back so no later message is lost to it. */
  private receive(timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const waiter = (m: unknown): void => {
        clearTimeout(timer);
        resolve(m);
      };
      const timer = setTimeout(
        () => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          resolve(TIMEOUT);
        },
        Math.max(0, timeoutMs),
      );
      this.waiters.push(waiter);
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited with ${code}`));
      });
    });
  }

  async stop(): Promise<void> {
    if (this.process.exitCode !== null) return;
    this.process.kill('SIGTERM');
    const killed = setTimeout(() => this.process.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(killed);
  }
}
const TIMEOUT = Symbol('timeout');

function commonArgs(): string[] {
  return [
    '--services',
    String(SERVICES),
    '--proxies',
    String(PROXIES),
    '--hub-every',
    String(HUB_EVERY),
    '--connections',
    String(CONNECTIONS),
    '--connect-concurrency',
    String(CONNECT_CONCURRENCY),
    '--node-extensions',
    String(NODE_EXTENSIONS),
    '--floor-heap-mib',
    args['floor-heap-mib']!,
    '--debounce-ms',
    args['debounce-ms']!,
    ...(args['fanout-slice-ms'] === undefined ? [] : ['--fanout-slice-ms', args['fanout-slice-ms']]),
    ...(args['max-connection-age-ms'] === undefined ? [] : ['--max-connection-age-ms', args['max-connection-age-ms']]),
    ...(args['max-connection-age-grace-ms'] === undefined ? [] : ['--max-connection-age-grace-ms', args['max-connection-age-grace-ms']]),
    ...(args['trace-gc'] ? ['--trace-gc'] : []),
    ...(args['trace-rounds'] ? ['--trace-rounds'] : []),
    ...(args['cpu-prof-dir'] ? ['--cpu-prof-dir', args['cpu-prof-dir']] : []),
    '--clients-window-bytes',
    String(CLIENTS_WINDOW_BYTES),
  ];
}

/**
 * The simulated Envoys' process keeps a young generation of at least 16 MB (V8's default grows to 16 MB and shrinks
 * back to 1 MB). An Envoy receiving xDS collects no garbage; the simulator's garbage should at least die young. Left
 * to V8, the clients idle ~9 s between the control plane's rounds (its status writes), V8 shrinks their young
 * generation to ~1 MB, and a round's ~8 MB of short-lived per-message objects (node:http2's, the ACKs) then ran ~8
 * scavenges, each moving what was in flight to the old generation (~2.5 MB a round): a mark-compact every 2-3 rounds,
 * 0.1-0.15 CPU-s in the round it fell in, the slow rounds of the 10,000 / 5,000 runs. With the floor (a round every
 * ~3 s) the young generation stayed large. --max-semi-space-size=64 (a larger ceiling, not a floor) was worse.
 */
const CLIENTS_V8_OPTIONS = ['--min-semi-space-size=16'];

/** The node/V8 options given for one side's processes (the clients' own first: a later flag overrides). */
function nodeOptions(side: 'cp' | 'floor' | 'clients'): string[] {
  const given = args[`${side}-node-options`]!.split(' ').filter(Boolean);
  return side === 'clients' ? [...CLIENTS_V8_OPTIONS, ...given] : given;
}

/** --cp-env 'A=1 B=2': variables for the control plane's process, over the benchmark's own. */
function controlPlaneEnv(): Record<string, string> {
  const entries = args['cp-env']!.split(/\s+/).filter(Boolean);
  return Object.fromEntries(
    entries.map((entry) => {
      const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(entry);
      if (!match) throw new Error(`--cp-env: "${entry}" is not NAME=value`);
      return [match[1]!, match[2]!];
    }),
  );
}

/** The control plane's marks from the write until every affected stream had its push, one line (--trace-rounds). */
async function traceOf(server: Child, from: number, to: number): Promise<string> {
  server.send({ type: 'trace', from: from - 50, to });
  const { marks, counts } = await server.next<Extract<FromServer, { type: 'trace' }>>('trace', 30_000);
  const base = marks.find((m) => m.what === 'cpu request');
  const at = (m: TraceMark) =>
    `${m.at >= from ? '+' : ''}${(m.at - from).toFixed(1)}${m.cpuMs && base ? ` [${(m.cpuMs - base.cpuMs).toFixed(1)}]` : ''}`;
  const seen: string[] = [];
  for (const m of marks) if (m.what !== 'cpu request' && !seen.includes(m.what)) seen.push(m.what);
  return seen
    .map((what) => {
      const of = marks.filter((m) => m.what === what);
      const n = counts[what] ?? 0;
      return n === 1 ? `${what} ${at(of[0]!)}` : `${what} ${n}× ${at(of[0]!)} … ${at(of.at(-1)!)}`;
    })
    .join('; ');
}

/**
 * Polls the control plane's GET /readyz until it answers 200, as a deployment's readiness probe (kubelet, systemd)
 * does from its start, before any proxy connects (and then every few seconds: runPhase asks once more after the first
 * full push). Without it the bench's first HTTP request to the control plane was its /metrics read right before
 * round 1: the first HTTP/1 writes through Node's stream code, which until then had seen only gRPC streams,
 * recompiled it in round 1 (~30-50 ms of CPU), a cost no probed and scraped control plane pays in a change.
 */
async function untilReadyOverHttp(httpPort: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const status = await readyzStatus(httpPort);
    if (status === 200) return;
    if (Date.now() > deadline)
      throw new Error(`the control plane's GET /readyz did not answer 200 within 60 s (last: ${status ?? 'no answer'})`);
    await sleep(100);
  }
}

/** One GET /readyz: its status, or undefined when nothing answered. */
async function readyzStatus(httpPort: number): Promise<number | undefined> {
  return fetch(`http://127.0.0.1:${httpPort}/readyz`).then(
    async (response) => {
      await response.arrayBuffer();
      return response.status;
    },
    () => undefined,
  );
}

async function rebuildSeconds(httpPort: number): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const read = (what: string) =>
    Number(new RegExp(`^trellis_control_plane_rebuild_seconds_${what}\\{reset="false"\\} ([\\d.e+-]+)`, 'm').exec(text)?.[1] ?? 0);
  return { sum: read('sum'), count: read('count') };
}

/**
 * Waits until the server has no proxy status left to write (the floor writes none). Asked over the bench's own
 * channel to the server's process, not by scraping its /metrics: four scrapes a second through the ~8 s a change's
 * 1,667 records take at 10,000 / 5,000 cost the server CPU and heap no Prometheus scraping every 15 s or more would.
 */
async function drainStatusBacklog(server: Child): Promise<void> {
  if (!args['status-drain']) return;
  const deadline = Date.now() + STATUS_DRAIN_TIMEOUT_MS;
  while (Date.now() < deadline) {
    server.send({ type: 'status backlog' } satisfies ToServer);
    if ((await server.next<Extract<FromServer, { type: 'status backlog' }>>('status backlog', 30_000)).records === 0) return;
    await sleep(250);
  }
  console.error(`the control plane's proxy status backlog did not drain within ${STATUS_DRAIN_TIMEOUT_MS / 1000} s; measuring anyway`);
}

let hubWrites = 0;

async function runPhase(
  name: string,
  profile: Profile,
  server: Child,
  ready: Extract<FromServer, { type: 'ready' }>,
  store: MeshStore,
): Promise<PhaseResult> {
  const stats = async (mark?: 'push start' | 'push end'): Promise<Extract<FromServer, { type: 'stats' }>> => {
    server.send({ type: 'stats', ...(mark ? { mark } : {}) });
    return server.next('stats', 30_000);
  };
  const serverCpu = async (): Promise<Extract<FromServer, { type: 'cpu' }>> => {
    server.send({ type: 'cpu' });
    return server.next<Extract<FromServer, { type: 'cpu' }>>('cpu', 30_000);
  };
  const gcOf = async (child: Child, from: number, to: number): Promise<GcReply> => {
    child.send({ type: 'gc', from, to });
    return child.next<GcReply>('gc', 30_000);
  };
  const beforeConnect = await stats('push start');
  const clients = Child.fork(
    'clients',
    ['--role', 'clients', '--profile', profile, '--target', `127.0.0.1:${ready.grpcPort}`, ...commonArgs()],
    nodeOptions('clients'),
  );
  try {
    const { ms: connectMs, cpuSeconds: connectClientCpuSeconds } = await clients.next<Extract<FromClients, { type: 'connected' }>>(
      'connected',
      600_000,
    );
    // CPU time is what the load on a shared machine stretches least: the work itself, not the wait for a core.
    const afterConnect = await stats('push end');
    const connectServerCpuSeconds = afterConnect.cpuSeconds - beforeConnect.cpuSeconds;
    const connectServerThreadCpuSeconds =
      afterConnect.threadCpuSeconds === undefined || beforeConnect.threadCpuSeconds === undefined
        ? undefined
        : threadCpuBetween(beforeConnect.threadCpuSeconds, afterConnect.threadCpuSeconds);
    console.log(
      `${name} [${profile}]: ${PROXIES} streams had their first full push (${typesOf(profile).length} types) in ${(connectMs / 1000).toFixed(1)} s`,
    );
    await sleep(SETTLE_MS);
    let reconnectsTotal = 0;
    /** One change of `hub` and what the clients saw of it. */
    const runRound = async (label: string): Promise<RoundResult> => {
      await drainStatusBacklog(server);
      clients.send({ type: 'arm' });
      const armed = await clients.next<Extract<FromClients, { type: 'armed' }>>('armed', 10_000);
      const serverMemory = args['trace-gc'] ? memoryOf(await gcOf(server, 0, 0)) : undefined;
      const serverBefore = (await serverCpu()).cpuSeconds;
      const machineBefore = machineBusySeconds();
      const t0 = now();
      await store.updateService(hubSpec(1000 + ++hubWrites), 'bench');
      const reached = await clients
        .next<Extract<FromClients, { type: 'all-affected-received' }>>('all-affected-received', ROUND_TIMEOUT_MS)
        .catch((err: Error) => console.error(`${name} ${label}: ${err.message}`));
      let cpu: PropagationCpu | undefined;
      let gc: PropagationGc | undefined;
      if (reached) {
        const machine = machineBusySeconds() - machineBefore;
        const serverAfter = await serverCpu();
        const serverCpuSeconds = serverAfter.cpuSeconds - serverBefore;
        const clientsCpu = reached.cpuSeconds - armed.cpuSeconds;
        cpu = { server: serverCpuSeconds, clients: clientsCpu, others: Math.max(0, machine - serverCpuSeconds - clientsCpu) };
        if (serverMemory) {
          const serverGc = await gcOf(server, t0, reached.at);
          gc = {
            server: serverGc.events,
            serverReached: memoryOf(serverGc),
            clients: (await gcOf(clients, t0, reached.at)).events,
            serverBefore: serverMemory,
            serverLoopDelayMaxMs: serverAfter.loopDelayMaxMs,
          };
        }
      }
      const traced = reached && args['trace-rounds'] ? await traceOf(server, t0, reached.at) : undefined;
      await sleep(SETTLE_MS); // catch extra pushes; let ACKs drain
      clients.send({ type: 'collect' });
      const r = await clients.next<Extract<FromClients, { type: 'round' }>>('round', 30_000);
      reconnectsTotal = r.reconnectsTotal;
      const latenciesMs = r.arrivals.map((at) => at - t0).sort((a, b) => a - b);
      console.log(
        `${name} [${profile}] ${label}: first ${fmt(latenciesMs[0])} p50 ${fmt(pct(latenciesMs, 0.5))} p99 ${fmt(pct(latenciesMs, 0.99))} max ${fmt(latenciesMs.at(-1))} ms; ` +
          `${latenciesMs.length} pushed, ${r.missing} missing, ${r.extraToAffected} extra, ${r.toUnaffected} to unaffected, ${r.staleVersion} same version; ` +
          `${r.responses} responses, ${kib(r.bytes)} of resources` +
          (r.reconnects > 0 ? `; ${r.reconnects} streams reconnected` : '') +
          (cpu
            ? `; CPU-s until all had it: server ${cpu.server.toFixed(3)}, clients ${cpu.clients.toFixed(3)}, rest of the machine ${cpu.others.toFixed(3)}`
            : '') +
          (gc
            ? `\n    GCs until all had it: server ${gcSummary(gc.server, t0)}; clients ${gcSummary(gc.clients, t0)}; ` +
              `server event-loop delay max ${fmt(gc.serverLoopDelayMaxMs)} ms; server before the write: array buffers ` +
              `${gc.serverBefore.arrayBuffersMiB.toFixed(1)} MiB, heap used ${gc.serverBefore.heapUsedMiB.toFixed(1)} MiB; ` +
              `when all had it: ${gc.serverReached.arrayBuffersMiB.toFixed(1)} / ${gc.serverReached.heapUsedMiB.toFixed(1)} MiB`
            : '') +
          (traced ? `\n    trace (ms after the write [server CPU-ms since just before it]): ${traced}` : ''),
      );
      return {
        latenciesMs,
        ...(cpu ? { cpu } : {}),
        ...(gc ? { gc } : {}),
        missing: r.missing,
        extraToAffected: r.extraToAffected,
        toUnaffected: r.toUnaffected,
        staleVersion: r.staleVersion,
        responses: r.responses,
        bytes: r.bytes,
        reconnects: r.reconnects,
      };
    };
    // A deployment's readiness probe keeps asking (kubelet's default period is 10 s): some of its requests come after
    // the first full push and before any change, as this one does.
    if (ready.httpPort) await readyzStatus(ready.httpPort);
    for (let w = 0; w < WARMUP_ROUNDS; w++) await runRound(`warm-up ${w + 1} (not counted)`);
    await drainStatusBacklog(server);
    const rebuildBefore = ready.httpPort ? await rebuildSeconds(ready.httpPort) : undefined;
    // The server's CPU while nothing changes (keepalives, status flushes, probes), to take out of the per-change figure.
    const idleStart = await stats();
    const idleFrom = now();
    await sleep(IDLE_MS);
    const before = await stats();
    const idleRate = (before.cpuSeconds - idleStart.cpuSeconds) / ((now() - idleFrom) / 1000);
    const roundsFrom = now();
    const rounds: RoundResult[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      if (round > 0) await sleep(SETTLE_MS); // let ACKs and proxy-status writes of the previous round drain
      rounds.push(await runRound(`round ${round + 1}`));
    }
    // The last change's proxy-status writes belong to its cost as the earlier changes' do:
    // each of those was written before the next round started.
    await drainStatusBacklog(server);
    const after = await stats();
    const roundsTo = now();
    const secondsPerChange = (roundsTo - roundsFrom) / 1000 / Math.max(1, ROUNDS);
    const gcOverRounds = args['trace-gc']
      ? { server: (await gcOf(server, roundsFrom, roundsTo)).events, clients: (await gcOf(clients, roundsFrom, roundsTo)).events }
      : undefined;
    const rebuildAfter = ready.httpPort ? await rebuildSeconds(ready.httpPort) : undefined;
    const rebuilds =
      rebuildBefore && rebuildAfter
        ? { count: rebuildAfter.count - rebuildBefore.count, sum: rebuildAfter.sum - rebuildBefore.sum }
        : undefined;
    return {
      name,
      reconnects: reconnectsTotal,
      connectMs,
      connectServerCpuSeconds,
      connectServerThreadCpuSeconds,
      connectClientCpuSeconds,
      rounds,
      cpuSecondsPerChange: (after.cpuSeconds - before.cpuSeconds) / Math.max(1, ROUNDS),
      idleCpuSecondsPerChange: idleRate * secondsPerChange,
      idleCpuMsPerSecond: idleRate * 1000,
      secondsPerChange,
      maxRssMiB: after.maxRssMiB,
      connectPeakMemory: afterConnect.peakMemory,
      roundsPeakMemory: [idleStart, before, after].map((s) => s.peakMemory).reduce((a, b) => (b.rssMiB > a.rssMiB ? b : a)),
      loopDelayP99Ms: after.loopDelayP99Ms,
      loopDelayMaxMs: after.loopDelayMaxMs,
      ...(gcOverRounds ? { gc: gcOverRounds } : {}),
      ...(rebuilds ? { rebuild: { count: rebuilds.count, meanMs: rebuilds.count > 0 ? (1000 * rebuilds.sum) / rebuilds.count : 0 } } : {}),
    };
  } finally {
    if (clients.process.connected) clients.send({ type: 'close' });
    await clients.exited;
  }
}

async function orchestrate(): Promise<void> {
  const affected = mesh.affectedProxies(PROXIES);
  const cpEnv = controlPlaneEnv();
  console.log(
    `${SERVICES} services (every ${HUB_EVERY}${HUB_EVERY === 2 ? 'nd' : HUB_EVERY === 3 ? 'rd' : 'th'} calls hub), ${PROXIES} SotW ADS streams over ${CONNECTIONS} connections ` +
      (CONNECT_CONCURRENCY > 0 ? `(at most ${CONNECT_CONCURRENCY} being set up at once) ` : '') +
      `(${affected} affected by a hub change), ${ROUNDS} rounds; clients' HTTP/2 windows ` +
      `${CLIENTS_WINDOW_BYTES > 0 ? kib(CLIENTS_WINDOW_BYTES) : '64 KiB (grpc-js default)'}; ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(1)}` +
      (args['cp-env'] ? `; the control plane with ${args['cp-env']}` : ''),
  );
  const etcd = await startEtcd();
  const layout = new KeyLayout(etcd.prefix);
  const client = etcd.client();
  const store = new MeshStore(client, layout);
  const children: Child[] = [];
  let failed = false;
  try {
    const seeding = now();
    await store.ensureMeshSettings({ tokenIssuer: 'trellis', clockSkewSeconds: 30 });
    await store.createService(hubSpec(1000), 'bench');
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        for (let i = next++; i < SERVICES; i = next++) await store.createService(mesh.serviceSpec(i), 'bench');
      }),
    );
    console.log(`registered ${SERVICES + 1} services in ${((now() - seeding) / 1000).toFixed(1)} s`);
    const serverArgs = ['--etcd-endpoints', etcd.endpoints.join(','), '--etcd-prefix', etcd.prefix, ...commonArgs()];

    // The floor first, then the control plane: both react to every hub write, so they do not run side by side.
    const profile = args['cpu-prof-dir'] ? ['--cpu-prof', '--cpu-prof-dir', args['cpu-prof-dir']] : [];
    const floor = FLOOR_IN_PROCESS
      ? Child.fork(
          'floor (in a control-plane process)',
          ['--role', 'cp', '--serve-floor', ...serverArgs],
          [...nodeOptions('cp'), ...profile],
          cpEnv,
        )
      : Child.fork('floor', ['--role', 'floor', ...serverArgs], [...nodeOptions('floor'), ...profile]);
    children.push(floor);
    const floorReady = await floor.next<Extract<FromServer, { type: 'ready' }>>('ready', 600_000);
    const floorResults: PhaseResult[] = [];
    for (const profile of profiles) floorResults.push(await runPhase('floor', profile, floor, floorReady, store));
    await floor.stop();

    const cp = Child.fork('control plane', ['--role', 'cp', ...serverArgs], [...nodeOptions('cp'), ...profile], cpEnv);
    children.push(cp);
    const cpReady = await cp.next<Extract<FromServer, { type: 'ready' }>>('ready', 600_000);
    if (cpReady.httpPort) await untilReadyOverHttp(cpReady.httpPort);
    const cpResults: PhaseResult[] = [];
    for (const p of profiles) cpResults.push(await runPhase('control plane', p, cp, cpReady, store));
    await cp.stop();

    profiles.forEach((p, i) => {
      failed = report(p, floorResults[i]!, cpResults[i]!, affected) || failed;
    });
    console.log(
      `\nmachine: ${cpus().length} cores, load average now ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
    );
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    client.close();
    await etcd.close();
  }
  process.exit(failed ? 1 : 0);
}

/** "RSS = heap + external (array buffers) + rest", MiB: the rest is code, native allocations and what the C allocator kept. */
function memorySplit(m: MemorySplit): string {
  const rest = m.rssMiB - m.heapMiB - m.externalMiB;
  const mib = (x: number): string => x.toFixed(0);
  return `${mib(m.rssMiB)} = ${mib(m.heapMiB)} heap + ${mib(m.externalMiB)} ext (${mib(m.arrayBuffersMiB)} AB) + ${mib(rest)} rest`;
}

/** Prints one profile's table; returns true if a push was missing, extra or stale. */
function report(profile: Profile, floor: PhaseResult, cp: PhaseResult, affected: number): boolean {
  const all = (phase: PhaseResult) => phase.rounds.flatMap((r) => r.latenciesMs).sort((a, b) => a - b);
  const per = (phase: PhaseResult, q: number) => median(phase.rounds.map((r) => pct(r.latenciesMs, q)));
  const perChange = (phase: PhaseResult, key: 'responses' | 'bytes') =>
    phase.rounds.reduce((sum, r) => sum + r[key], 0) / Math.max(1, phase.rounds.length);
  const f = all(floor);
  const c = all(cp);
  const debounce = Number(args['debounce-ms']);
  const rows: [string, string, string, string][] = [
    ['', FLOOR_NAME, 'control plane', 'control plane / floor'],
    ['p50, all rounds', fmt(pct(f, 0.5)), fmt(pct(c, 0.5)), ratio(pct(c, 0.5), pct(f, 0.5))],
    ['p99, all rounds', fmt(pct(f, 0.99)), fmt(pct(c, 0.99)), ratio(pct(c, 0.99), pct(f, 0.99))],
    ['max', fmt(f.at(-1)), fmt(c.at(-1)), ratio(c.at(-1), f.at(-1))],
    // When the first affected stream had its push: the server's part before anything leaves, the clients' reading after.
    ['first push, median of rounds', fmt(per(floor, 0)), fmt(per(cp, 0)), ratio(per(cp, 0), per(floor, 0))],
    ['p50, median of rounds', fmt(per(floor, 0.5)), fmt(per(cp, 0.5)), ratio(per(cp, 0.5), per(floor, 0.5))],
    ['p99, median of rounds', fmt(per(floor, 0.99)), fmt(per(cp, 0.99)), ratio(per(cp, 0.99), per(floor, 0.99))],
  ];
  if (debounce > 0) {
    const less = (x: number | undefined) => (x === undefined ? undefined : x - debounce);
    rows.push(['p99, debounce subtracted', fmt(pct(f, 0.99)), fmt(less(pct(c, 0.99))), ratio(less(pct(c, 0.99)), pct(f, 0.99))]);
  }
  rows.push(
    ['first full push to all', fmt(floor.connectMs), fmt(cp.connectMs), ratio(cp.connectMs, floor.connectMs)],
    [
      '  server CPU-s during it',
      floor.connectServerCpuSeconds.toFixed(2),
      cp.connectServerCpuSeconds.toFixed(2),
      ratio(cp.connectServerCpuSeconds, floor.connectServerCpuSeconds),
    ],
    ...(floor.connectServerThreadCpuSeconds === undefined || cp.connectServerThreadCpuSeconds === undefined
      ? []
      : THREAD_GROUPS.map(({ key, label }): [string, string, string, string] => [
          `    ${label}`,
          floor.connectServerThreadCpuSeconds![key].toFixed(2),
          cp.connectServerThreadCpuSeconds![key].toFixed(2),
          ratio(cp.connectServerThreadCpuSeconds![key], floor.connectServerThreadCpuSeconds![key]),
        ])),
    ['  clients CPU-s during it', floor.connectClientCpuSeconds.toFixed(2), cp.connectClientCpuSeconds.toFixed(2), '—'],
    ['responses per change', perChange(floor, 'responses').toFixed(0), perChange(cp, 'responses').toFixed(0), '—'],
    ['resource bytes per change', kib(perChange(floor, 'bytes')), kib(perChange(cp, 'bytes')), '—'],
    [
      'server CPU-s per change',
      floor.cpuSecondsPerChange.toFixed(3),
      cp.cpuSecondsPerChange.toFixed(3),
      ratio(cp.cpuSecondsPerChange, floor.cpuSecondsPerChange),
    ],
    ['  of which idle (same time, no change)', floor.idleCpuSecondsPerChange.toFixed(3), cp.idleCpuSecondsPerChange.toFixed(3), '—'],
    // The idle part is a rate times a round's length, and the control plane's rounds are longer (they wait for its
    // rate-limited status writes): compare the rates.
    [
      '    = idle CPU-ms per second',
      floor.idleCpuMsPerSecond.toFixed(1),
      cp.idleCpuMsPerSecond.toFixed(1),
      ratio(cp.idleCpuMsPerSecond, floor.idleCpuMsPerSecond),
    ],
    ['    × seconds per change', floor.secondsPerChange.toFixed(1), cp.secondsPerChange.toFixed(1), '—'],
    ...(['server', 'clients', 'others'] as const).map((who): [string, string, string, string] => [
      who === 'server'
        ? 'CPU-s write → all affected reached: server'
        : `  ${who === 'clients' ? 'clients process' : 'rest of the machine'}`,
      propagationCpu(floor, who),
      propagationCpu(cp, who),
      '—',
    ]),
    ['server peak RSS, MiB', floor.maxRssMiB.toFixed(0), cp.maxRssMiB.toFixed(0), ratio(cp.maxRssMiB, floor.maxRssMiB)],
    // Sampled every 100 ms: "RSS = V8 heap + external (of which array buffers) + the rest" at each part's largest sample.
    ['  sampled, storm and first push', memorySplit(floor.connectPeakMemory), memorySplit(cp.connectPeakMemory), '—'],
    ['  sampled, after it (to the last round)', memorySplit(floor.roundsPeakMemory), memorySplit(cp.roundsPeakMemory), '—'],
    [
      'event-loop delay p99 / max, ms',
      `${fmt(floor.loopDelayP99Ms)} / ${fmt(floor.loopDelayMaxMs)}`,
      `${fmt(cp.loopDelayP99Ms)} / ${fmt(cp.loopDelayMaxMs)}`,
      '—',
    ],
  );
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log(`\n[${profile}] hub write → push received, ms (debounce ${debounce} ms)`);
  for (const row of rows) console.log(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
  // A round is slow when its p99 is over twice the floor's (median over the floor's rounds).
  const floorRoundP99 = per(floor, 0.99);
  if (floorRoundP99 !== undefined) {
    const slow = (phase: PhaseResult) => phase.rounds.filter((r) => (pct(r.latenciesMs, 0.99) ?? Infinity) > 2 * floorRoundP99).length;
    console.log(
      `rounds with p99 over 2× the floor's median round (${fmt(2 * floorRoundP99)} ms): floor ${slow(floor)}/${floor.rounds.length}, ` +
        `control plane ${slow(cp)}/${cp.rounds.length}`,
    );
  }
  for (const phase of [floor, cp])
    if (phase.gc)
      console.log(
        `GCs over the ${phase.rounds.length} rounds, ${phase.name}: server ${gcSummary(phase.gc.server)}; clients ${gcSummary(phase.gc.clients)}`,
      );
  if (cp.rebuild)
    console.log(
      `control plane rebuilds during the rounds: ${cp.rebuild.count}, mean ${cp.rebuild.meanMs.toFixed(1)} ms ` +
        `(trellis_control_plane_rebuild_seconds; the debounce window of ${debounce} ms comes before it)`,
    );
  let failed = false;
  for (const phase of [floor, cp]) {
    const totals = phase.rounds.reduce(
      (t, r) => ({
        pushed: t.pushed + r.latenciesMs.length,
        missing: t.missing + r.missing,
        extra: t.extra + r.extraToAffected,
        unaffected: t.unaffected + r.toUnaffected,
        stale: t.stale + r.staleVersion,
      }),
      { pushed: 0, missing: 0, extra: 0, unaffected: 0, stale: 0 },
    );
    const ok = totals.missing === 0 && totals.extra === 0 && totals.unaffected === 0 && totals.stale === 0;
    console.log(
      `${phase.name} [${profile}]: ${totals.pushed}/${affected * phase.rounds.length} affected streams reached, ${totals.missing} missing, ` +
        `${totals.extra} extra to affected, ${totals.unaffected} to unaffected, ${totals.stale} without a new cluster version; ` +
        `${phase.reconnects} streams reconnected — ${ok ? 'correct' : 'FAILED'}`,
    );
    failed ||= !ok;
  }
  return failed;
}

function memoryOf({ arrayBuffersMiB, heapUsedMiB }: GcReply): PropagationGc['serverBefore'] {
  return { arrayBuffersMiB, heapUsedMiB };
}

/** "2 scavenges (31 ms), 1 mark-compact (85 ms, at +40 ms)": a process's GCs in a window starting at t0. */
function gcSummary(events: GcEvent[], t0?: number): string {
  const parts = (['scavenge', 'incremental', 'mark-compact', 'weak'] as const).flatMap((kind) => {
    const of = events.filter((e) => e.kind === kind);
    if (of.length === 0) return [];
    const ms = of.reduce((sum, e) => sum + e.ms, 0);
    const when = t0 !== undefined && kind !== 'scavenge' ? `, at ${of.map((e) => `+${(e.at - t0).toFixed(0)}`).join(' ')} ms` : '';
    const name = kind === 'incremental' ? 'incremental marking start' : kind === 'weak' ? 'weak callbacks' : kind;
    return [`${of.length} ${name}${of.length === 1 || kind === 'weak' ? '' : 's'} (${fmt(ms)} ms${when})`];
  });
  return parts.length > 0 ? parts.join(', ') : 'none';
}

/** Median over the rounds of one party's CPU-seconds while a change propagated. */
function propagationCpu(phase: PhaseResult, who: keyof PropagationCpu): string {
  const values = phase.rounds.flatMap((r) => (r.cpu ? [r.cpu[who]] : []));
  return values.length > 0 ? median(values)!.toFixed(3) : '—';
}

/** Busy time of every core so far, in seconds (what `top` counts as used: all but idle and iowait). */
function machineBusySeconds(): number {
  return cpus().reduce((sum, { times }) => sum + (times.user + times.nice + times.sys + times.irq) / 1000, 0);
}

function kib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

function pct(sorted: number[], q: number): number | undefined {
  return sorted.length === 0 ? undefined : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function median(xs: (number | undefined)[]): number | undefined {
  const defined = xs.filter((x): x is number => x !== undefined).sort((a, b) => a - b);
  return defined[Math.floor(defined.length / 2)];
}

function fmt(ms: number | undefined): string {
  return ms === undefined ? '—' : ms >= 100 ? ms.toFixed(0) : ms.toFixed(1);
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || b === 0 ? '—' : `${(a / b).toFixed(2)}×`;
}

function tell(message: FromClients | FromServer): void {
  process.send!(message);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Until the orchestrator stops this process: SIGTERM, or its channel closing (the orchestrator is gone, however it ended). */
function untilTerminated(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('disconnect', () => resolve());
  });
}

const role = args.role;
(role === 'cp' ? controlPlaneRole() : role === 'floor' ? floorRole() : role === 'clients' ? clientsRole() : orchestrate()).catch(
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

/**
 * A server's CPU time by thread, in groups a CPU profile cannot tell apart (it samples the main thread only):
 *   main      JavaScript, and the main thread's part of every GC
 *   platform  the threads Node starts before any JavaScript runs: V8's platform workers (--v8-pool-size, default 4),
 *             which run the GC's parallel and concurrent work (scavenge helpers, concurrent marking and sweeping) and
 *             the optimizing compiler (concurrent recompilation), beside Node's delayed-task and signal threads (idle)
 *   later     threads started after: libuv's thread pool (fs, dns, crypto and zlib work), worker threads
 * Node 20 does not name its threads (every one is "node"), so the platform threads are those alive when this module
 * is first evaluated, before anything could start libuv's pool.
 */
interface ThreadCpu {
  main: number;
  platform: number;
  later: number;
}
const THREAD_GROUPS: { key: keyof ThreadCpu; label: string }[] = [
  { key: 'main', label: 'of which its main thread' },
  { key: 'platform', label: "V8's platform threads (GC helpers, compiler)" },
  { key: 'later', label: "threads started later (libuv's pool)" },
];

function taskIds(): string[] {
  try {
    return readdirSync('/proc/self/task');
  } catch {
    return [];
  }
}

/** This process's CPU time so far by thread group, seconds (Linux: each thread's schedstat, in ns), or undefined elsewhere. */
function threadCpuSeconds(): ThreadCpu | undefined {
  const ids = taskIds();
  if (ids.length === 0) return undefined;
  const cpu: ThreadCpu = { main: 0, platform: 0, later: 0 };
  for (const id of ids) {
    let schedstat: string;
    try {
      schedstat = readFileSync(`/proc/self/task/${id}/schedstat`, 'latin1');
    } catch {
      continue; // the thread ended between the listing and the read
    }
    // "time on a CPU (ns) time waiting for one (ns) timeslices"
    const seconds = Number(schedstat.slice(0, schedstat.indexOf(' '))) / 1e9;
    cpu[id === String(process.pid) ? 'main' : STARTUP_THREADS.has(id) ? 'platform' : 'later'] += seconds;
  }
  return cpu;
}

function threadCpuBetween(before: ThreadCpu, after: ThreadCpu): ThreadCpu {
  return { main: after.main - before.main, platform: after.platform - before.platform, later: after.later - before.later };
}

function cpuSecondsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
}
