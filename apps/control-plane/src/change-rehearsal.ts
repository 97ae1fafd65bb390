// A start-up rehearsal of the change path. V8 compiles the code a change runs (the incremental model
// build, affectedTest, the snapshot cache's fan-out, sharedTypesChange and adopt) during the first
// changes it sees, and a change's once-per-change branches get their feedback only then: a control
// plane's first real changes after start-up (or a replica restarted in a rollout) were its slowest.
// Here a few synthetic changes derived from the served model run through the same functions, on
// throwaway state: a model built over the served one (models are never edited once built), a cache of
// its own with no real stream, no metric, no log of the pipeline and nothing written anywhere. With `streams`,
// each identity it watches also gets a throwaway ADS session and an in-process client (stream-rehearsal.ts).
import { ServiceRecord } from '@trellis/mesh-schema';
import type { InstanceRecord } from '@trellis/mesh-schema';
import { affectedTest, buildMeshModel, type MeshModel, type MeshStateView, type TranslatorSettings } from './model';
import type { ProxyIdentity } from './resource';
import { RehearsalStreams } from './stream-rehearsal';
import type { SnapshotCache } from './xds';

/** One synthetic change: the state after it and the services its events would name. */
export interface RehearsedChange {
  name: string;
  state: MeshStateView;
  changed: ReadonlySet<string>;
}

export interface RehearsalOptions {
  /** The model being served, and the state it was built from. Neither is changed. */
  model: MeshModel;
  state: MeshStateView;
  settings: TranslatorSettings;
  /**
   * A new cache for the rehearsal alone, made as the served one is (the same translation and options, its own memo)
   * but without fan-out slices: each step is then one turn's work, and nothing of it runs once the rehearsal stopped.
   */
  newCache: () => SnapshotCache<MeshModel>;
  /** True once a real change has arrived (or the loop closed): the rehearsal stops at its next step. */
  interrupted: () => boolean;
  /** True while the served cache has identities waiting (a first push): the rehearsal waits for it. */
  busy: () => boolean;
  /** Sidecar identities the rehearsal's cache translates at most (the most-declared service's callers), within half the CPU budget. */
  maxIdentities?: number;
  /** Stops after the step that crosses this much CPU (this process's, during the steps). */
  maxCpuMs?: number;
  /**
   * Whether each identity the rehearsal's cache watches gets a throwaway ADS session and in-process client
   * (stream-rehearsal.ts), so the first responses, ACKs, EDS re-requests and change-only pushes run too.
   */
  streams?: boolean;
  /** The `control_plane.identifier` the rehearsal's sessions write, as the served ones do. */
  controlPlaneId?: string;
}

export interface RehearsalResult {
  /** Synthetic changes run through the change path. */
  changes: number;
  /** Identities the rehearsal's cache held (fewer than asked when their translation took half the budget). */
  identities: number;
  /** Throwaway ADS sessions the rehearsal ran (one per identity, or none). */
  streams: number;
  /** This process's CPU during the rehearsal's steps (waits for a push left out). */
  cpuMs: number;
  /** From start to end, waits included. */
  wallMs: number;
  /** Why it ended before its last change, if it did. */
  stopped?: 'real change' | 'cpu budget' | 'nothing to rehearse';
}

export const DEFAULT_REHEARSAL_IDENTITIES = 1024;
export const DEFAULT_REHEARSAL_CPU_MS = 300;
/** Identities the rehearsal's cache translates a turn. */
const WATCH_BATCH = 64;
/** Times the most-declared service's policy is tuned and put back. */
const POLICY_CHANGES = 3;
/** How often a rehearsal waiting for a push looks again. */
const BUSY_POLL_MS = 20;

/**
 * The synthetic changes, in order, each from the state the one before left: the service most declared as a
 * dependency (the change that reaches most proxies) loses an instance and gets it back, its policy changes (its
 * callers' clusters alone: the shared-upstreams path) and changes back, a few times, its record is written again unchanged,
 * and one of its callers stops declaring it and declares it again. Records go through the schema, as the
 * watcher's are (from JSON text), so the model sees the shapes real records have.
 */
export function rehearsalChanges(state: MeshStateView, model: MeshModel): RehearsedChange[] {
  const target = mostDeclared(model);
  if (target === undefined) return [];
  const changes: RehearsedChange[] = [];
  let current = state;
  const step = (name: string, edit: (s: MeshStateView) => MeshStateView, changed: string): void => {
    current = edit(current);
    changes.push({ name, state: current, changed: new Set([changed]) });
  };
  // From JSON text, as the watcher decodes a stored value: zod then sees the objects JSON.parse makes.
  const parsed = (value: unknown): ServiceRecord => ServiceRecord.parse(JSON.parse(JSON.stringify(value)));
  const withRecord = (service: string, value: ServiceRecord) => (s: MeshStateView) => {
    const services = new Map(s.services);
    services.set(service, { value, modRevision: s.services.get(service)!.modRevision });
    return { ...s, services };
  };
  const withInstances = (service: string, instances: ReadonlyMap<string, InstanceRecord> | undefined) => (s: MeshStateView) => {
    const all = new Map(s.instances);
    if (instances && instances.size > 0) all.set(service, instances);
    else all.delete(service);
    return { ...s, instances: all };
  };

  const instances = state.instances.get(target);
  const last = instances ? [...instances.keys()].at(-1) : undefined;
  if (instances && last !== undefined) {
    const fewer = new Map(instances);
    fewer.delete(last);
    step('an instance deregistered', withInstances(target, fewer), target);
    step('the instance registered again', withInstances(target, new Map(instances)), target);
  }
  const record = state.services.get(target)?.value;
  if (record) {
    const limit = record.spec.policy.circuitBreaker?.maxConnections ?? 1024;
    // Several times: a callee's change reaching its callers' clusters alone is the common change (and the benchmark's),
    // and its per-caller code (sharedTypesChange, adopt) is small, so V8 optimises it only after many calls.
    for (let r = 0; r < POLICY_CHANGES; r++) {
      const tuned = parsed({
        ...record,
        generation: record.generation + 2 * r + 1,
        spec: {
          ...record.spec,
          policy: {
            ...record.spec.policy,
            circuitBreaker: { ...record.spec.policy.circuitBreaker, maxConnections: limit > r + 1 ? limit - r - 1 : limit + r + 1 },
          },
        },
      });
      step('its policy tuned', withRecord(target, tuned), target);
      step('its policy back', withRecord(target, parsed({ ...record, generation: record.generation + 2 * r + 2 })), target);
    }
    const generation = record.generation + 2 * POLICY_CHANGES;
    step('its record written again', withRecord(target, parsed({ ...record, generation })), target);
  }
  const caller = [...(model.index.declaredBy.get(target) ?? [])].find((name) => state.services.has(name));
  const callerRecord = caller === undefined ? undefined : state.services.get(caller)?.value;
  if (caller !== undefined && callerRecord) {
    const without = parsed({
      ...callerRecord,
      generation: callerRecord.generation + 1,
      spec: { ...callerRecord.spec, dependencies: callerRecord.spec.dependencies.filter((d) => d.service !== target) },
    });
    step('a caller stops declaring it', withRecord(caller, without), caller);
    step('the caller declares it again', withRecord(caller, parsed({ ...callerRecord, generation: callerRecord.generation + 2 })), caller);
  }
  return changes;
}

/** The registered service the most others declare as a dependency. */
function mostDeclared(model: MeshModel): string | undefined {
  let best: string | undefined;
  let most = 0;
  model.index.declaredBy.forEach((declarers, name) => {
    if (declarers.size > most && model.services.has(name)) {
      best = name;
      most = declarers.size;
    }
  });
  return best ?? model.services.keys().next().value;
}

/**
 * Runs the rehearsal: the rehearsal's cache watches the target's callers (and the target), takes the served model,
 * then each synthetic change as the rebuild loop hands one over (buildMeshModel from the previous model with the
 * changed names, affectedTest, setModel), one step per event-loop turn.
 */
export async function rehearseChanges(options: RehearsalOptions): Promise<RehearsalResult> {
  const startedAt = performance.now();
  const maxCpuMs = options.maxCpuMs ?? DEFAULT_REHEARSAL_CPU_MS;
  let cpuMs = 0;
  const result = (changes: number, identities: number, stopped?: RehearsalResult['stopped']): RehearsalResult => ({
    changes,
    identities,
    // One per identity watched, when it runs streams.
    streams: options.streams ? identities : 0,
    cpuMs: Math.round(cpuMs),
    wallMs: Math.round(performance.now() - startedAt),
    ...(stopped ? { stopped } : {}),
  });
  /** Yields a turn, waits while a push is under way; false when the rehearsal must stop. */
  const turn = async (): Promise<boolean> => {
    await new Promise((resolve) => setImmediate(resolve));
    while (!options.interrupted() && options.busy()) await new Promise((resolve) => setTimeout(resolve, BUSY_POLL_MS).unref());
    return !options.interrupted();
  };
  /** Runs one step (and its cache's fan-out) and counts its CPU. */
  const timed = async (run: () => Promise<unknown>): Promise<void> => {
    const before = process.cpuUsage();
    await run();
    const used = process.cpuUsage(before);
    cpuMs += (used.user + used.system) / 1000;
  };

  let changes: RehearsedChange[] = [];
  await timed(async () => (changes = rehearsalChanges(options.state, options.model)));
  if (changes.length === 0) return result(0, 0, 'nothing to rehearse');
  const target = [...changes[0]!.changed][0]!;
  const identities: ProxyIdentity[] = [{ service: target, kind: 'envoy' }];
  for (const caller of options.model.index.declaredBy.get(target) ?? []) {
    if (identities.length >= (options.maxIdentities ?? DEFAULT_REHEARSAL_IDENTITIES)) break;
    if (options.model.services.has(caller)) identities.push({ service: caller, kind: 'envoy' });
  }

  const cache = options.newCache();
  const streams = options.streams ? new RehearsalStreams(options.controlPlaneId ?? 'trellis-rehearsal', cache) : undefined;
  const ignore = (): void => undefined;
  const watches: Array<{ cancel: () => void }> = [];
  let done = 0;
  try {
    let model = options.model;
    cache.setModel(model, 'all', { revision: model.revision, changedAt: Date.now() });
    // Its identities a batch a turn: the cache (made without fan-out slices) translates each as it is watched. At most
    // half the budget: in a process that has translated nothing yet (no proxy connected) a translation costs ~0.3 ms
    // at 10,000 services, and the changes are what the rehearsal is for.
    for (let i = 0; i < identities.length && (i === 0 || cpuMs < maxCpuMs / 2); i += WATCH_BATCH) {
      if (!(await turn())) return result(0, watches.length, 'real change');
      await timed(async () => {
        for (const identity of identities.slice(i, i + WATCH_BATCH)) {
          const feed = streams?.open(identity);
          const watch = cache.watch(identity, feed ?? ignore);
          watches.push(watch);
          if (feed && watch.snapshot) feed(watch.snapshot);
        }
        // Their first responses, ACKs and the EDS and RDS requests that follow, as a connecting proxy's.
        await streams?.settle();
      });
    }
    for (const change of changes) {
      if (!(await turn())) return result(done, watches.length, 'real change');
      if (cpuMs >= maxCpuMs) return result(done, watches.length, 'cpu budget');
      await timed(() => {
        const next = buildMeshModel(change.state, options.settings, model, change.changed);
        const affected = affectedTest(model, next);
        model = next;
        // The change-only pushes and their ACKs (and the EDS requests Envoy sends for re-created clusters).
        return cache.setModel(next, affected, { revision: next.revision, changedAt: Date.now() }).settled.then(() => streams?.settle());
      });
      done++;
    }
    return result(done, watches.length);
  } finally {
    // Its snapshots and pooled resources go with its last watch and its sessions; nothing else holds them.
    streams?.close();
    for (const watch of watches) watch.cancel();
  }
}
