// MeshWatcher: a consistent snapshot of the mesh at one etcd revision, then
// every later change in order, exactly once. It owns its resume point: etcd3's
// Watcher resumes from the last *header* revision, which can run ahead of the
// events actually delivered, so we rewrite the start revision on every
// (re)connect and drop any event at or below what we already applied.
// With etcd auth, a watch also outlives the auth token its stream was opened
// with (etcd restarted, or the token expired): it re-authenticates and reopens
// the watch on a new stream.
import { EventEmitter } from 'node:events';
import type { Etcd3, IWatchResponse, Namespace, Watcher } from 'etcd3';
import type { Logger } from '@trellis/runtime';
import { etcdStreamErrorCode, isStaleAuthTokenRefusal, rangePrefix, refreshAuthToken } from './etcd-client';
import type { KeyLayout } from './keys';
import { applyKvEvent, buildMeshState, emptyMeshState, type InvalidRecord, type KvEvent, type MeshChange, type MeshState } from './state';
import type { WrittenValues } from './written-values';

export interface MeshUpdate {
  /** The revision `state` now reflects. */
  revision: string;
  /** True when `state` was replaced wholesale (first snapshot, compaction recovery): rebuild everything; `changes` is empty. */
  reset: boolean;
  changes: MeshChange[];
}

export interface MeshWatcherOptions {
  logger?: Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;
  /**
   * Called once per unusable stored value (per key and mod revision, also across
   * snapshot reloads), after it is logged: apps count it in a metric. The value is
   * left out of the mirror (`state.invalid` lists it) and the watch goes on.
   */
  onInvalid?: (record: InvalidRecord) => void;
  /**
   * Called once each time the connected watch stream breaks (its connection dropped, etcd sent
   * GOAWAY), with a bounded reason (etcdStreamErrorCode), after it is logged: apps count it in a
   * metric. The watch then reconnects and resumes after the last revision applied.
   */
  onDisconnect?: (code: string) => void;
  /** What this process's MeshStore is writing (the same object as its `writtenValues`): its echo is not parsed again. */
  writtenValues?: WrittenValues;
}

export interface MeshWatcherEvents {
  update: [MeshUpdate];
  status: [{ live: boolean }];
  /**
   * The mirror reached this revision. Also for events that change nothing it holds
   * (history, host claims): a reader waiting for its own write's
   * revision learns the write arrived even when no `update` follows.
   */
  revision: [string];
}

/** Snapshot retry delays: quick at first, then every 2 s while etcd stays away. */
const RETRY_INITIAL_MS = 100;
const RETRY_MAX_MS = 2_000;

export class MeshWatcher extends EventEmitter<MeshWatcherEvents> {
  private currentState: MeshState = emptyMeshState();
  private isReady = false;
  private isLive = false;
  private closed = false;
  private watcher: Watcher | undefined;
  /**
   * Where the watch is opened: a namespace of the client's own (no key prefix) owns an
   * etcd3 watch stream. etcd3 puts every watch on its one stream and reopens it only on
   * a stream error; a stream whose auth token etcd no longer accepts stays open and
   * every watch created on it is refused. So after such a refusal the watch moves to a
   * new namespace, whose stream opens with the refreshed token (the abandoned stream,
   * watching nothing, ends with its connection).
   */
  private watchStreams: Namespace;
  /** Watch cancellations since events last flowed; a cancel that keeps coming back (not a compaction) must not spin. */
  private cancelsInARow = 0;
  private readonly readyPromise: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (err: Error) => void;
  private readonly logger: MeshWatcherOptions['logger'];
  private readonly onInvalidRecord: MeshWatcherOptions['onInvalid'];
  private readonly onDisconnect: MeshWatcherOptions['onDisconnect'];
  private readonly writtenValues: WrittenValues | undefined;
  /** key → mod revision of the unusable values already reported, so each is logged and counted once. */
  private readonly reported = new Map<string, string>();
  /**
   * Where replicas before the status records moved out of the watched range (KeyLayout.statusRecords) write proxy
   * status, as bytes: during a rolling upgrade their writes still arrive (one per affected stream after each change),
   * and the mirror holds none, so their events are told by the key's first bytes, without a key string, a parse or an
   * event object each.
   */
  private readonly legacyProxyStatusKeys: Buffer;

  private constructor(
    private readonly client: Etcd3,
    private readonly layout: KeyLayout,
    opts: MeshWatcherOptions,
  ) {
    super();
    this.watchStreams = client.namespace('');
    this.legacyProxyStatusKeys = Buffer.from(layout.legacyProxyStatuses());
    this.logger = opts.logger;
    this.onInvalidRecord = opts.onInvalid;
    this.onDisconnect = opts.onDisconnect;
    this.writtenValues = opts.writtenValues;
    this.readyPromise = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // Callers that only listen to events must not see an unhandled rejection on close().
    this.readyPromise.catch(() => undefined);
  }

  static start(client: Etcd3, layout: KeyLayout, opts: MeshWatcherOptions = {}): MeshWatcher {
    const w = new MeshWatcher(client, layout, opts);
    void w.resync('initial snapshot');
    return w;
  }

  /** The mirror; replaced (not mutated) on a reset, mutated in place by ordinary changes. */
  get state(): MeshState {
    return this.currentState;
  }
  /** The first snapshot is loaded. */
  get ready(): boolean {
    return this.isReady;
  }
  /** The watch stream is connected (changes are flowing). */
  get live(): boolean {
    return this.isLive;
  }

  whenReady(): Promise<void> {
    return this.readyPromise;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.rejectReady(new Error('mesh watcher closed before its first snapshot'));
    await this.dropWatch();
    this.setLive(false);
  }

  /** Loads a fresh snapshot (retrying until etcd answers), publishes it as a reset, then watches from it. */
  private async resync(reason: string, delayMs = 0): Promise<void> {
    await this.dropWatch();
    this.setLive(false);
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    let delay = RETRY_INITIAL_MS;
    while (!this.closed) {
      let state: MeshState;
      try {
        state = await this.loadSnapshot();
      } catch (err) {
        this.logger?.warn({ err, retryInMs: delay, reason }, 'mesh snapshot failed; retrying');
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, RETRY_MAX_MS);
        continue;
      }
      if (this.closed) return;
      this.currentState = state;
      this.forgetRepaired();
      this.logger?.info({ revision: state.revision, services: state.services.size, reason }, 'mesh snapshot loaded');
      this.startWatch();
      if (!this.isReady) {
        this.isReady = true;
        this.resolveReady();
      }
      // Outside the retry: a throwing listener is the listener's bug, not a reason to reload.
      this.publish({ revision: state.revision, reset: true, changes: [] });
      this.emitRevision();
      return;
    }
  }

  /** Every record the mirror holds, read range by range at one revision. */
  private async loadSnapshot(): Promise<MeshState> {
    const first = await rangePrefix(this.client, this.layout.services());
    const revision = first.revision;
    const rest = await Promise.all(
      [this.layout.instances(), this.layout.deregistrations(), this.layout.meshSettings(), this.layout.authzKeys()].map((p) =>
        rangePrefix(this.client, p, revision),
      ),
    );
    const kvs: KvEvent[] = [first, ...rest].flatMap((r) =>
      r.kvs.map((kv) => ({
        type: 'put' as const,
        key: kv.key.toString('utf8'),
        value: kv.value,
        modRevision: kv.mod_revision,
        createRevision: kv.create_revision,
      })),
    );
    return buildMeshState(this.layout, revision, kvs, this.onInvalid);
  }

  private startWatch(): void {
    const resumeFrom = () => (BigInt(this.currentState.revision) + 1n).toString();
    // The prefix up to the status records (meshWatchRange): the control planes' proxy-status writes are never sent.
    // Without previous values: the mirror applies each event from its own key and value.
    const watcher = this.watchStreams.watch().inRange(this.layout.meshWatchRange()).startRevision(resumeFrom()).watcher();
    this.watcher = watcher;
    const current = () => this.watcher === watcher && !this.closed;
    // etcd3 would resume from its own (header) revision; resume from ours instead.
    // 'connecting' carries the create request just before it is written (not in etcd3's typings).
    (watcher as EventEmitter).on('connecting', (req: { start_revision?: string | number }) => {
      if (current()) req.start_revision = resumeFrom();
    });
    watcher
      .on('connected', () => {
        if (current()) this.setLive(true);
      })
      .on('disconnected', (err: Error) => {
        if (!current()) return;
        const wasLive = this.isLive;
        this.logger?.warn({ err: err.message, resumeFrom: resumeFrom() }, 'mesh watch disconnected; reconnecting');
        this.setLive(false);
        // etcd3 reports one break twice (the stream's error, then its end), and a failed reconnect again: count the break once.
        if (wasLive) this.onDisconnect?.(etcdStreamErrorCode(err));
      })
      .on('data', (res: IWatchResponse) => {
        if (current()) this.applyResponse(res);
      })
      // etcd cancels a watch whose start revision was compacted, or that its stream's
      // auth token no longer allows; etcd3 then only emits this bare error and
      // forgets the watcher. Recover with a new token, or from a snapshot.
      .on('error', (err: Error) => {
        if (!current()) return;
        this.cancelsInARow += 1;
        const delayMs = this.cancelsInARow === 1 ? 0 : Math.min(RETRY_INITIAL_MS * 2 ** this.cancelsInARow, RETRY_MAX_MS);
        this.watcher = undefined;
        if (isStaleAuthTokenRefusal(err)) {
          this.logger?.warn(
            { err: err.message, resumeFrom: resumeFrom(), delayMs },
            "mesh watch refused for its stream's etcd auth token (etcd restarted?); re-authenticating on a new stream",
          );
          void this.rewatchWithFreshToken(delayMs);
          return;
        }
        this.logger?.warn(
          { err: err.message, resumeFrom: resumeFrom(), delayMs },
          'mesh watch canceled by etcd (compacted?); reloading snapshot',
        );
        void this.resync('watch canceled', delayMs);
      });
  }

  /**
   * A token etcd accepts, then the same watch from the same resume point on a new
   * stream. Nothing was missed (the watch resumes where it stopped), so no snapshot.
   */
  private async rewatchWithFreshToken(delayMs: number): Promise<void> {
    this.setLive(false);
    let delay = delayMs;
    for (;;) {
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      if (this.closed) return;
      try {
        await refreshAuthToken(this.client, this.layout.prefix);
        break;
      } catch (err) {
        delay = Math.min(Math.max(delay * 2, RETRY_INITIAL_MS), RETRY_MAX_MS);
        this.logger?.warn({ err, retryInMs: delay }, 'etcd re-authentication for the mesh watch failed; retrying');
      }
    }
    if (this.closed) return;
    this.watchStreams = this.client.namespace('');
    this.startWatch();
  }

  private applyResponse(res: IWatchResponse): void {
    const applied = BigInt(this.currentState.revision);
    const changes: MeshChange[] = [];
    let last = applied;
    for (const ev of res.events) {
      const rev = BigInt(ev.kv.mod_revision);
      if (rev <= applied) continue; // replayed after a reconnect: already applied
      if (rev > last) last = rev;
      if (startsWith(ev.kv.key, this.legacyProxyStatusKeys)) continue;
      const type = ev.type === 'Put' ? 'put' : 'delete';
      const key = ev.kv.key.toString('utf8');
      const decoded = type === 'put' ? this.writtenValues?.take(key, ev.kv.value) : undefined;
      const change = applyKvEvent(
        this.currentState,
        this.layout,
        {
          type,
          key,
          value: ev.kv.value,
          modRevision: ev.kv.mod_revision,
          createRevision: ev.kv.create_revision,
          ...(decoded !== undefined ? { decoded } : {}),
        },
        this.onInvalid,
      );
      if (change) changes.push(change);
    }
    if (last === applied) return;
    this.cancelsInARow = 0;
    this.currentState.revision = last.toString();
    if (changes.length > 0) {
      if (changes.some((change) => change.kind === 'invalid')) this.forgetRepaired();
      this.publish({ revision: this.currentState.revision, reset: false, changes });
    }
    this.emitRevision();
  }

  private emitRevision(): void {
    const revision = this.currentState.revision;
    for (const listener of this.listeners('revision')) {
      try {
        listener.call(this, revision);
      } catch (err) {
        this.logger?.error({ err, revision }, 'a mesh revision listener failed; the watch goes on');
      }
    }
  }

  /**
   * Listeners run inside etcd3's stream callbacks and our own async resync: an
   * exception there would end the process or the watch. A listener that throws is
   * logged; the watch and the other listeners go on.
   */
  private publish(update: MeshUpdate): void {
    for (const listener of this.listeners('update')) {
      try {
        listener.call(this, update);
      } catch (err) {
        this.logger?.error({ err, revision: update.revision }, 'a mesh update listener failed; the watch goes on');
      }
    }
  }

  private readonly onInvalid = (record: InvalidRecord): void => {
    if (this.reported.get(record.key) === record.modRevision) return;
    this.reported.set(record.key, record.modRevision);
    this.logger?.error(
      { key: record.key, kind: record.kind, issues: record.issues, modRevision: record.modRevision },
      'invalid record in etcd ignored by the mesh mirror',
    );
    try {
      this.onInvalidRecord?.(record);
    } catch (err) {
      this.logger?.error({ err }, 'the invalid-record callback failed');
    }
  };

  /** Keys repaired or deleted since they were reported may be reported again when they break again. */
  private forgetRepaired(): void {
    for (const key of this.reported.keys()) if (!this.currentState.invalid.has(key)) this.reported.delete(key);
  }

  private setLive(live: boolean): void {
    if (this.isLive === live) return;
    this.isLive = live;
    this.emit('status', { live });
  }

  private async dropWatch(): Promise<void> {
    const watcher = this.watcher;
    this.watcher = undefined;
    if (!watcher) return;
    try {
      // etcd3 waits for the cancel to be acknowledged; never let a dead stream hold up close().
      await Promise.race([watcher.cancel(), new Promise((r) => setTimeout(r, 2_000).unref())]);
    } catch (err) {
      this.logger?.debug({ err }, 'cancelling the mesh watch failed (stream already gone)');
    }
  }
}

function startsWith(bytes: Buffer, prefix: Buffer): boolean {
  return bytes.length >= prefix.length && prefix.compare(bytes, 0, prefix.length) === 0;
}
