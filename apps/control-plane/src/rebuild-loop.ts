// The rebuild loop: etcd watch updates → debounce → mesh model → snapshot cache.
// Each rebuild reuses the previous model where services did not change and tells
// the cache which identities are affected; a watch reset rebuilds everything.
// Endpoints lost to a mass lease expiry (an etcd stall) are overlaid for a grace
// period, and the end of that period triggers a rebuild of its own.
import type { MeshUpdate, MeshWatcher } from '@trellis/mesh-schema';
import type { Logger } from '@trellis/runtime';
import { rehearseChanges } from './change-rehearsal';
import { Debouncer } from './debounce';
import type { ControlPlaneMetrics } from './metrics';
import {
  affectedTest,
  buildMeshModel,
  EndpointRetention,
  type MeshModel,
  type MeshStateView,
  type RetainedEndpoint,
  type TranslatorSettings,
} from './model';
import type { SnapshotCache } from './xds';

export interface RebuildLoopDeps {
  watcher: MeshWatcher;
  cache: SnapshotCache<MeshModel>;
  settings: TranslatorSettings;
  metrics: ControlPlaneMetrics;
  logger: Logger;
  debounceMs: number;
  debounceMaxMs: number;
  /** Endpoint retention after a mass lease expiry: how long, what share of a service's endpoints, within what window. */
  retention: { graceSeconds: number; share: number; windowMs: number };
  /** After each rebuild (readiness may have changed). */
  onRebuilt: () => void;
  /**
   * A cache for the start-up rehearsal alone (change-rehearsal.ts), made as `cache` is with its own translation
   * memo; undefined: no rehearsal.
   */
  rehearsalCache?: () => SnapshotCache<MeshModel>;
  /** Throwaway ADS sessions in the rehearsal (stream-rehearsal.ts), writing this control plane's id; undefined: none. */
  rehearsalStreams?: { controlPlaneId: string };
}

/** The start-up rehearsal waits until the served cache has built no identity for this long (a first push is over). */
const REHEARSAL_QUIET_MS = 100;

export class RebuildLoop {
  private current: MeshModel | undefined;
  // A watch reset since the last rebuild: build from scratch, not from the previous model.
  private pendingReset = false;
  private readonly debouncer: Debouncer;
  private readonly retention: EndpointRetention;
  /** Services with instance changes since the last rebuild ('all' after a reset). */
  private instancesChanged: Set<string> | 'all' = 'all';
  /**
   * Services whose record or instances changed since the last rebuild, from the
   * etcd events: the model is updated for these alone. 'unknown' after a change
   * that names no service (an unusable record, a reset): then the model finds
   * the changed services itself.
   */
  private servicesChanged: Set<string> | 'unknown' = 'unknown';
  private retentionTimer: NodeJS.Timeout | undefined;
  /** Updates seen: a rehearsal stops when a real change arrives. */
  private updates = 0;
  private closed = false;
  private rehearsalStarted = false;
  /** Settles when the start-up rehearsal has ended (at once if none runs). */
  rehearsed: Promise<void> = Promise.resolve();
  private readonly onUpdate = (update: MeshUpdate): void => {
    this.updates++;
    if (update.reset) {
      this.pendingReset = true;
      this.instancesChanged = 'all';
      this.servicesChanged = 'unknown';
    } else {
      for (const c of update.changes) {
        const named = (c.kind === 'instance' || c.kind === 'service') && c.service !== undefined;
        if (named && this.instancesChanged !== 'all') this.instancesChanged.add(c.service!);
        if (!named) this.servicesChanged = 'unknown';
        else if (this.servicesChanged !== 'unknown') this.servicesChanged.add(c.service!);
      }
    }
    this.debouncer.trigger();
  };

  constructor(private readonly deps: RebuildLoopDeps) {
    this.debouncer = new Debouncer(
      (firstChangeAt) => {
        const reset = this.pendingReset;
        this.pendingReset = false;
        this.rebuild(firstChangeAt, reset);
      },
      deps.debounceMs,
      deps.debounceMaxMs,
      (err) => deps.logger.error({ err }, 'mesh rebuild failed; serving the previous model'),
    );
    this.retention = new EndpointRetention({
      graceMs: deps.retention.graceSeconds * 1000,
      share: deps.retention.share,
      windowMs: deps.retention.windowMs,
    });
    deps.watcher.on('update', this.onUpdate);
  }

  /** Endpoints kept after a mass lease expiry (shown at /debug/model). */
  retained(): RetainedEndpoint[] {
    return this.retention.list();
  }

  /** The model being served (undefined before the first rebuild). */
  get model(): MeshModel | undefined {
    return this.current;
  }

  /** Stops rebuilding; the cache keeps serving the last model. */
  close(): void {
    this.closed = true;
    this.deps.watcher.off('update', this.onUpdate);
    this.debouncer.close();
    clearTimeout(this.retentionTimer);
  }

  private rebuild(firstChangeAt: number, reset: boolean): void {
    const { watcher, cache, settings, metrics, logger } = this.deps;
    const started = process.hrtime.bigint();
    const changed = this.servicesChanged;
    this.servicesChanged = new Set();
    const retaining = this.observeRetention();
    const state = watcher.state;
    const view = { ...state, instances: this.retention.overlay(state.instances) };
    const prev = this.current;
    // From the previous model and the services the events named, the update touches only what they reach.
    // Retained endpoints come and go without an event: then the model compares records to find what changed.
    const hint = changed === 'unknown' || retaining ? undefined : changed;
    let next: MeshModel;
    try {
      next = buildMeshModel(view, settings, reset ? undefined : prev, hint);
    } catch (err) {
      // The next rebuild cannot rely on the names this one consumed.
      this.servicesChanged = 'unknown';
      throw err;
    }
    const updates = this.updates;
    const rehearse = !prev && !this.rehearsalStarted && this.deps.rehearsalCache !== undefined;
    this.rehearsalStarted ||= rehearse;
    // Asked by the cache only about services with a connected proxy: nothing is compared for the others.
    const affected = reset || !prev ? 'all' : affectedTest(prev, next);
    this.current = next;
    const update = cache.setModel(next, affected, { revision: next.revision, changedAt: firstChangeAt });
    // The cache may hand the snapshots out over later event-loop turns (fanOutSliceMs): measured to the end of that.
    void update.settled.then((result) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.observeRebuild(seconds, { ...result, reset });
      // Once the first model is served: its change path, rehearsed before the first real change needs it.
      if (rehearse) this.rehearsed = this.rehearse(next, view, updates);
      logger.debug(
        { revision: next.revision, ...(affected === 'all' ? { affected: 'all' } : {}), ...result, ms: seconds * 1000 },
        'mesh rebuilt',
      );
    });
    metrics.droppedInputs.set(next.dropped.length);
    metrics.meshRevision.set(Number(next.revision));
    const stats = cache.stats();
    metrics.cacheIdentities.set(stats.identities);
    metrics.cacheResources.set(stats.pooledResources);
    metrics.cacheBytes.set(stats.pooledBytes);
    // Logged when the set of dropped inputs changes, not on every rebuild.
    if (next.dropped.length > 0 && JSON.stringify(next.dropped) !== JSON.stringify(prev?.dropped ?? []))
      logger.warn({ dropped: next.dropped.slice(0, 20), count: next.dropped.length }, 'registry inputs left out of the mesh model');
    this.deps.onRebuilt();
  }

  /** The start-up rehearsal (change-rehearsal.ts) from the model first served; `updates`: those seen when it was built. */
  private async rehearse(model: MeshModel, state: MeshStateView, updates: number): Promise<void> {
    const { cache, settings, logger, rehearsalCache, rehearsalStreams } = this.deps;
    try {
      const result = await rehearseChanges({
        model,
        state,
        settings,
        newCache: rehearsalCache!,
        streams: rehearsalStreams !== undefined,
        controlPlaneId: rehearsalStreams?.controlPlaneId,
        interrupted: () => this.closed || this.updates !== updates || this.current !== model,
        // A connection storm's streams arrive in waves: a slice that built an identity lately says one is still going.
        busy: () => {
          const activity = cache.pushActivity();
          return activity.pendingBuilds > 0 || activity.msSinceBuild < REHEARSAL_QUIET_MS;
        },
      });
      logger.info(result, 'change path rehearsed on throwaway state');
    } catch (err) {
      // Nothing served depends on it: the first real changes only run colder.
      logger.warn({ err }, 'change path rehearsal failed; nothing served is affected');
    }
  }

  /** Returns true when endpoints are retained or were released by this observation. */
  private observeRetention(): boolean {
    const { watcher, metrics, logger } = this.deps;
    const changed = this.instancesChanged;
    this.instancesChanged = new Set();
    const result = this.retention.observe(watcher.state, changed, Date.now());
    for (const e of result.engaged) {
      metrics.retentionsEngaged.inc();
      logger.warn(
        { service: e.service, expired: e.expired, live: e.live, graceSeconds: this.deps.retention.graceSeconds },
        'most endpoints of a service expired at once (etcd stall?); keeping them for the grace period',
      );
    }
    const retained = this.retention.list();
    metrics.retainedEndpoints.set(retained.length);
    if (result.released > 0) logger.info({ released: result.released, stillRetained: retained.length }, 'retained endpoints released');
    clearTimeout(this.retentionTimer);
    const deadline = this.retention.nextDeadline();
    // A grace period ends without any etcd change: rebuild then.
    if (deadline !== undefined)
      this.retentionTimer = setTimeout(() => this.debouncer.trigger(), Math.max(0, deadline - Date.now()) + 1).unref();
    return retained.length > 0 || result.released > 0;
  }
}
