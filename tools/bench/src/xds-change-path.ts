// The control plane's change path in one process, without etcd or sockets: the benchmark
// mesh of xds-fanout.ts (hub and S services, every n-th calling hub), P SotW sidecar
// sessions fed by the real snapshot cache, translation, consistency check, metrics
// callbacks, status writer bookkeeping and response encoding (grpc-js serializes a write
// in the call), and simulated Envoys that ACK and re-request EDS. Per change of hub's
// circuit-breaker limit it times, on this one thread (CPU = wall time here):
//   - to last CDS: the model update, affected identities, translation, snapshots, the
//     sessions' pumps and the encoding, until the last affected stream's CDS is encoded;
//   - after: the ACKs and EDS requests that follow, until nothing is left to answer (the server's CPU:
//     the simulated Envoys' reading of responses and writing of requests, timed apart, left out).
//   node tools/bench/xds-change-path.mjs [options]     (--help lists them)
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { TypeUrl } from '@trellis/envoy-types';
import { DiscoveryRequest, type DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { ServiceRecord, ServiceSpec, type ServiceSpecInput } from '@trellis/mesh-schema';
import { createMetricsRegistry } from '@trellis/runtime';
import { rehearseChanges } from '../../../apps/control-plane/src/change-rehearsal';
import { buildProxyResources, sharedUpstreamsChange } from '../../../apps/control-plane/src/envoy';
import { createControlPlaneMetrics } from '../../../apps/control-plane/src/metrics';
import {
  affectedTest,
  buildMeshModel,
  DEFAULT_TRANSLATOR_SETTINGS,
  type MeshModel,
  type MeshStateView,
} from '../../../apps/control-plane/src/model';
import { snapshotInconsistencies, TranslationMemo, type ProxyIdentity } from '../../../apps/control-plane/src/resource';
import {
  AdsServiceDefinition,
  composeCallbacks,
  decodeDiscoveryRequest,
  ProxyStatusWriter,
  SnapshotCache,
  SotwSession,
} from '../../../apps/control-plane/src/xds';
import { parseBenchArgs } from './bench-cli';
import { BenchMesh, hubSpec, resourceName } from './bench-mesh';

const args = parseBenchArgs(
  {
    name: 'xds-change-path',
    summary:
      "The control plane's change path in one process (no etcd, no sockets): per change of hub's record, the CPU time " +
      "until the last affected stream's CDS is encoded, then for the ACKs and EDS requests that follow; median of rounds.",
  },
  {
    services: { type: 'string', default: '1000', help: 'Services in the benchmark mesh (besides hub).' },
    proxies: { type: 'string', default: '1000', help: 'Simulated sidecar streams, one identity each.' },
    rounds: { type: 'string', default: '60', help: 'Changes of hub, each timed.' },
    'hub-every': { type: 'string', default: '3', help: 'Every n-th service declares hub as a dependency (the rest call their neighbour).' },
    'slice-ms': {
      type: 'string',
      default: '20',
      help: "The fan-out's time slice in ms (TRELLIS_XDS_FANOUT_SLICE_MS); 0: the whole fan-out in one turn.",
    },
    rehearse: {
      type: 'boolean',
      default: false,
      help:
        "After the first push, run the control plane's start-up rehearsal of the change path (change-rehearsal.ts, " +
        'TRELLIS_XDS_CHANGE_REHEARSAL) before the first change; compare the first changes with and without it.',
    },
    'rehearsal-identities': { type: 'string', default: '1024', help: 'With --rehearse: the identities its cache translates.' },
    'rehearse-streams': {
      type: 'boolean',
      default: false,
      help: 'With --rehearse: also its throwaway ADS sessions, one per identity (stream-rehearsal.ts, TRELLIS_XDS_STREAM_REHEARSAL).',
    },
    smoke: { type: 'boolean', default: false, help: 'Seconds, tiny sizes (40 services, 30 streams, 3 rounds): what `npm test` runs.' },
    'cpu-prof': { type: 'string', help: 'Write a V8 CPU profile of the rounds (not the first push) to this file.' },
    'alloc-profile': {
      type: 'boolean',
      default: false,
      help: "Report the first push's allocation, sampled by V8's heap profiler (objects that die young included); the sampling slows the push, so compare CPU without it.",
    },
    'alloc-kept': {
      type: 'string',
      default: 'all',
      help:
        "With --alloc-profile, which of the push's allocations count: all; scavenged (those that outlived a scavenge: " +
        'promoted, or alive at the end); retained (alive after a full GC at the end). Scavenged minus retained is what was ' +
        'promoted only to die. The largest allocation sites (function and caller) are listed.',
    },
    'alloc-profile-out': { type: 'string', help: "With --alloc-profile: write V8's sampling heap profile to this file." },
  },
);
const SERVICES = args.smoke ? 40 : Number(args.services);
const PROXIES = args.smoke ? 30 : Number(args.proxies);
const ROUNDS = args.smoke ? 3 : Number(args.rounds);
const HUB_EVERY = Number(args['hub-every']);
const SLICE_MS = Number(args['slice-ms']);
const ALLOC_KEPT = args['alloc-kept'];
if (!['all', 'scavenged', 'retained'].includes(ALLOC_KEPT!)) throw new Error(`--alloc-kept: all, scavenged or retained, not ${ALLOC_KEPT}`);

const at = '2026-01-01T00:00:00.000Z';
let revision = 10;
function record(spec: ServiceSpecInput, generation = 1): { value: ServiceRecord; modRevision: string } {
  const value = ServiceRecord.parse({
    spec: ServiceSpec.parse(spec),
    generation,
    created: { actor: 'bench', at },
    updated: { actor: 'bench', at },
  });
  return { value, modRevision: String(++revision) };
}
const mesh = new BenchMesh(SERVICES, HUB_EVERY);
const services = new Map<string, { value: ServiceRecord; modRevision: string }>();
services.set('hub', record(hubSpec(1000)));
for (let i = 0; i < SERVICES; i++) {
  const spec = mesh.serviceSpec(i);
  services.set(spec.name, record(spec));
}
let state: MeshStateView = {
  revision: String(revision),
  services,
  instances: new Map(),
  authzKeys: new Map(),
  meshSettings: { tokenIssuer: 'trellis', clockSkewSeconds: 30 } as never,
};

// The control plane's defaults (loadControlPlaneConfig's, as the fan-out benchmark runs it).
const settings = DEFAULT_TRANSLATOR_SETTINGS;
const memo = new TranslationMemo();
/** Time spent translating and checking identities: this thread's wall time (its CPU when no other process competes for the core). */
const spent = { translation: 0, check: 0 };
/** One closure site for the served cache and the rehearsal's, as the control plane has (control-plane.ts translateWith). */
const translateWith =
  (translationMemo: TranslationMemo) =>
  (m: MeshModel, identity: ProxyIdentity): ReturnType<typeof buildProxyResources> => {
    const started = performance.now();
    const set = buildProxyResources(m, identity, translationMemo);
    spent.translation += performance.now() - started;
    return set;
  };
const cache = new SnapshotCache<MeshModel>(translateWith(memo), {
  check: (set) => {
    const started = performance.now();
    const problems = snapshotInconsistencies(set);
    spent.check += performance.now() - started;
    return problems;
  },
  sharedTypesChange: sharedUpstreamsChange,
  onTranslateError: (_identity, err) => {
    throw err;
  },
  onInconsistent: (_identity, problems) => {
    throw new Error(problems.join('; '));
  },
  ...(SLICE_MS > 0 ? { fanOutSliceMs: SLICE_MS } : {}),
});
const metrics = createControlPlaneMetrics(createMetricsRegistry('control-plane'));
const statusWriter = new ProxyStatusWriter({
  client: undefined as never,
  store: undefined as never,
  controlPlaneId: 'cp-bench',
  logger: undefined as never,
});
const callbacks = composeCallbacks(metrics.callbacks, statusWriter);

/** What the control plane's grpc-js server serializes each response with (its service definition's serializer). */
const serializeResponse = AdsServiceDefinition.streamAggregatedResources.responseSerialize;

/** Responses on their way to the Envoys, read once the server is done with the change. */
const outbound: { session: SotwSession; response: DiscoveryResponse }[] = [];
/** What each simulated Envoy holds per type: its subscription and the last response's version and nonce. */
interface Held {
  names: string[];
  versionInfo: string;
  responseNonce: string;
}
const held = new Map<SotwSession, Map<string, Held>>();

/**
 * The Envoy: ACK everything; after clusters, endpoints for them (the bench's client reads the names from the bytes).
 * Every request carries the type's subscription and the version and nonce last received, as Envoy's (and
 * xds-fanout's clients') do: an ACK repeats the subscription, and the endpoints asked for again after new clusters
 * name the last endpoints response.
 */
function readResponse(session: SotwSession, response: DiscoveryResponse): void {
  const types = held.get(session)!;
  const type = types.get(response.typeUrl) ?? { names: [], versionInfo: '', responseNonce: '' };
  types.set(response.typeUrl, type);
  type.versionInfo = response.versionInfo;
  type.responseNonce = response.nonce;
  request(session, {
    typeUrl: response.typeUrl,
    resourceNames: type.names,
    versionInfo: type.versionInfo,
    responseNonce: type.responseNonce,
  });
  if (response.typeUrl === TypeUrl.Cluster) {
    const endpoints = types.get(TypeUrl.ClusterLoadAssignment) ?? { names: [], versionInfo: '', responseNonce: '' };
    types.set(TypeUrl.ClusterLoadAssignment, endpoints);
    endpoints.names = response.resources.map((any) => resourceName(any.value));
    request(session, {
      typeUrl: TypeUrl.ClusterLoadAssignment,
      resourceNames: endpoints.names,
      versionInfo: endpoints.versionInfo,
      responseNonce: endpoints.responseNonce,
    });
  }
}

/** Requests on their way to the server, delivered a turn later (the network). */
const inbound: { session: SotwSession; bytes: Buffer }[] = [];
let cdsSent = 0;
let lastCdsAt = 0;
let lastCdsCpu = 0;
let affectedStreams = Infinity;
const cpuMs = (): number => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
let bytesOut = 0;

function request(session: SotwSession, fields: Partial<DiscoveryRequest>): void {
  const message = DiscoveryRequest.fromPartial(fields);
  inbound.push({ session, bytes: Buffer.from(DiscoveryRequest.encode(message).finish()) });
}

const sessions: SotwSession[] = [];
const identities: ProxyIdentity[] = [];
for (let p = 0; p < PROXIES; p++) {
  const identity = { service: mesh.proxyService(p), kind: 'envoy' as const };
  const info = { streamId: p + 1, nodeId: `node-${p}`, identity, protocol: 'sotw' as const, connectedAt: new Date() };
  const send = (response: DiscoveryResponse): boolean => {
    // grpc-js serializes a message when it is written; the Envoy reads it later (the clients are another process).
    bytesOut += serializeResponse(response).length;
    if (response.typeUrl === TypeUrl.Cluster) {
      cdsSent++;
      lastCdsAt = performance.now();
      if (cdsSent === affectedStreams) lastCdsCpu = cpuMs();
    }
    outbound.push({ session, response });
    return true;
  };
  const session: SotwSession = new SotwSession(info, send, callbacks, 'cp-bench', false);
  callbacks.onStreamOpen(info);
  sessions.push(session);
  held.set(session, new Map());
  identities.push(identity);
  request(session, { typeUrl: TypeUrl.Cluster });
  request(session, { typeUrl: TypeUrl.Listener });
}

/** CPU the simulated Envoys spent reading responses and writing requests (one thread with the server). */
let envoysCpu = 0;

/** Delivers requests until none is left (each delivery is a turn, pumps run in between). */
async function drain(): Promise<void> {
  for (;;) {
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const readingFrom = cpuMs();
    for (const { session, response } of outbound.splice(0)) readResponse(session, response);
    envoysCpu += cpuMs() - readingFrom;
    if (inbound.length === 0) return;
    for (const { session, bytes } of inbound.splice(0)) session.handleRequest(decodeDiscoveryRequest(bytes));
  }
}

/** Garbage collections since the process started, by kind (V8's scavenges and mark-compacts). */
const gcs = { minor: 0, major: 0 };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = (entry as unknown as { detail?: { kind?: number } }).detail?.kind;
    if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) gcs.minor++;
    else if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) gcs.major++;
  }
}).observe({ entryTypes: ['gc'] });

interface SamplingHeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  id: number;
  children: SamplingHeapNode[];
}
interface SamplingHeapProfile {
  head: SamplingHeapNode;
  samples: { size: number; nodeId: number }[];
}

/** Sampled bytes by allocating function and its caller (bundle lines), largest first. */
function allocationSites(profile: SamplingHeapProfile): [string, number][] {
  const bySite = new Map<string, number>();
  const frame = (n: SamplingHeapNode): string =>
    `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;
  const visit = (node: SamplingHeapNode, parent: SamplingHeapNode | undefined): void => {
    if (node.selfSize > 0) {
      const site = `${frame(node)} <- ${parent ? frame(parent) : '-'}`;
      bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
    }
    for (const child of node.children) visit(child, node);
  };
  visit(profile.head, undefined);
  return [...bySite].sort((a, b) => b[1] - a[1]);
}

async function main(): Promise<void> {
  // The first push: every identity translated, every stream answered CDS and LDS, then EDS, and every ACK read.
  const allocations = args['alloc-profile'] ? new Session() : undefined;
  if (allocations) {
    allocations.connect();
    await allocations.post('HeapProfiler.startSampling', {
      samplingInterval: 4096,
      includeObjectsCollectedByMajorGC: ALLOC_KEPT !== 'retained',
      includeObjectsCollectedByMinorGC: ALLOC_KEPT === 'all',
    } as never);
  }
  const firstCpu = cpuMs();
  const firstAt = performance.now();
  const firstGcs = { ...gcs };
  let model = buildMeshModel(state, settings);
  const modelMs = performance.now() - firstAt;
  void cache.setModel(model, 'all', { revision: state.revision, changedAt: Date.now() });
  for (const [p, session] of sessions.entries()) {
    const watch = cache.watch(identities[p]!, (snapshot) => session.setSnapshot(snapshot));
    if (watch.snapshot) session.setSnapshot(watch.snapshot);
  }
  await drain();
  // Observers run after the GC's own task: one more turn lets the last ones count.
  await new Promise((r) => setImmediate(r));
  console.log(
    `first push (the model, then ${PROXIES} streams' CDS, LDS and EDS and their ACKs): CPU ${(cpuMs() - firstCpu).toFixed(0)} ms, ` +
      `wall ${(performance.now() - firstAt).toFixed(0)} ms, ${gcs.minor - firstGcs.minor} scavenges, ${gcs.major - firstGcs.major} mark-compacts`,
  );
  // CPU counts V8's compiler and GC threads too; these parts are this thread's time (GC inside them included).
  console.log(
    `  of which on this thread: the model ${modelMs.toFixed(0)} ms, translation ${spent.translation.toFixed(0)} ms, ` +
      `the check ${spent.check.toFixed(0)} ms`,
  );
  if (allocations) {
    if (ALLOC_KEPT === 'retained') {
      // A full GC without a command-line flag (as jest's leak detector takes it): what the push left alive stays sampled.
      setFlagsFromString('--expose-gc');
      (runInNewContext('gc') as () => void)();
    }
    const { profile } = (await allocations.post('HeapProfiler.stopSampling')) as unknown as { profile: SamplingHeapProfile };
    const bytes = profile.samples.reduce((sum, sample) => sum + sample.size, 0);
    console.log(`  allocated (sampled, ${ALLOC_KEPT}): ${(bytes / 2 ** 20).toFixed(1)} MiB; the largest sites:`);
    if (args['alloc-profile-out']) writeFileSync(args['alloc-profile-out'], JSON.stringify(profile));
    for (const [site, siteBytes] of allocationSites(profile).slice(0, 25))
      console.log(`    ${(siteBytes / 2 ** 20).toFixed(2).padStart(7)} MiB  ${site}`);
    allocations.disconnect();
  }
  if (args.rehearse) {
    // As the control plane makes its rehearsal's cache: the same translation and options, a memo of its own, no slices.
    const rehearsal = await rehearseChanges({
      model,
      state,
      settings,
      newCache: () =>
        new SnapshotCache<MeshModel>(translateWith(new TranslationMemo()), {
          check: snapshotInconsistencies,
          sharedTypesChange: sharedUpstreamsChange,
        }),
      interrupted: () => false,
      maxIdentities: Number(args['rehearsal-identities']),
      streams: args['rehearse-streams'],
      controlPlaneId: 'bench',
      busy: () => cache.pushActivity().pendingBuilds > 0,
    });
    console.log(`rehearsal: ${JSON.stringify(rehearsal)}`);
  }
  // Listeners' routes: the Envoy asks for RDS after LDS (the bench does; kept out of the timed part).
  affectedStreams = mesh.affectedProxies(PROXIES);
  console.log(`${SERVICES} services, ${PROXIES} streams (${affectedStreams} affected), ${ROUNDS} rounds, slice ${SLICE_MS} ms`);

  const profiler = args['cpu-prof'] ? new Session() : undefined;
  if (profiler) {
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.start');
  }
  const toLast: number[] = [];
  const cpuToLast: number[] = [];
  const after: number[] = [];
  const afterServerCpu: number[] = [];
  const bytesPerChange: number[] = [];
  /** The first changes after start-up, each (the warm-up rounds the medians leave out). */
  const firstChanges: string[] = [];
  for (let round = 0; round < ROUNDS + 3; round++) {
    const services2 = new Map(state.services);
    services2.set('hub', record(hubSpec(1001 + round), round + 2));
    const next: MeshStateView = { ...state, revision: String(revision), services: services2 };
    cdsSent = 0;
    bytesOut = 0;
    const started = performance.now();
    const startedCpu = cpuMs();
    const built = buildMeshModel(next, settings, model, new Set(['hub']));
    const affected = affectedTest(model, built);
    const update = cache.setModel(built, affected, { revision: next.revision, changedAt: Date.now() });
    await update.settled;
    // Every affected stream gets its new clusters once, no other stream gets any.
    if (cdsSent !== affectedStreams) throw new Error(`round ${round}: ${cdsSent} CDS responses for ${affectedStreams} affected streams`);
    const last = lastCdsAt - started;
    const drained = performance.now();
    const drainedCpu = cpuMs();
    envoysCpu = 0;
    await drain();
    const rest = performance.now() - drained;
    const restServerCpu = cpuMs() - drainedCpu - envoysCpu;
    model = built;
    state = next;
    if (round < 3) firstChanges.push(`${(lastCdsCpu - startedCpu).toFixed(1)} + ${restServerCpu.toFixed(1)}`);
    if (round >= 3) {
      toLast.push(last);
      cpuToLast.push(lastCdsCpu - startedCpu);
      after.push(rest);
      afterServerCpu.push(restServerCpu);
      bytesPerChange.push(bytesOut);
    }
  }
  console.log(`changes 1-3 after start (server CPU ms: to last CDS + after): ${firstChanges.join(', ')}`);
  if (profiler) writeFileSync(args['cpu-prof']!, JSON.stringify((await profiler.post('Profiler.stop')).profile));
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const q = (xs: number[], f: number): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * f)]!;
  console.log(
    `to last CDS: CPU median ${median(cpuToLast).toFixed(2)} ms (p10 ${q(cpuToLast, 0.1).toFixed(2)}, p90 ${q(cpuToLast, 0.9).toFixed(2)}); wall median ${median(toLast).toFixed(2)} ms (p10 ${q(toLast, 0.1).toFixed(2)}, p90 ${q(toLast, 0.9).toFixed(2)}); ` +
      `after (ACKs, EDS): server CPU median ${median(afterServerCpu).toFixed(2)} ms (p10 ${q(afterServerCpu, 0.1).toFixed(2)}, p90 ${q(afterServerCpu, 0.9).toFixed(2)}), ` +
      `wall median ${median(after).toFixed(2)} ms (with the simulated Envoys); bytes out per change ${median(bytesPerChange)}`,
  );
  process.exit(0);
}

void main();
