// RegistryView: the registry's reads served from memory — the MeshWatcher
// mirror the control plane and authz keep too — with read-your-writes.
//
// Read-your-writes, one process-wide mark: the store reports the revision of
// every write this process commits (MeshStore `onCommit`), and a read waits
// until the mirror has reached the highest such revision. Per-client marks would
// need a client identity (cookie, header) that curl, the CLI and the UI's
// redirect-after-post do not all carry; the shared mark needs none, and costs a
// wait only for reads that arrive within the one watch delivery (~1 ms) after
// some write. A read that cannot get there in time (the watch is down) is served
// from etcd instead, so a 2xx write is never followed by a read that misses it.
import type { MeshState, MeshWatcherEvents, ServiceRecord, Versioned } from '@trellis/mesh-schema';

export interface RegistryViewOptions {
  /** How long a read waits for the mirror to catch up before the caller reads etcd. */
  catchUpMs?: number;
  now?: () => number;
}

/** What the view needs of a MeshWatcher. */
export interface ViewSource {
  readonly ready: boolean;
  readonly live: boolean;
  readonly state: MeshState;
  on<K extends keyof MeshWatcherEvents>(event: K, listener: (...args: MeshWatcherEvents[K]) => void): unknown;
  close(): Promise<void>;
}

interface Waiter {
  revision: bigint;
  resolve: (caughtUp: boolean) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_CATCH_UP_MS = 2_000;

export class RegistryView {
  /** Highest revision this process wrote. */
  private written = 0n;
  /** The revision the mirror reflects, kept as a number so the hot path does not parse it. */
  private reached = 0n;
  /** When the watch was last seen to stop (or the view started); undefined while it runs. */
  private staleSince: number | undefined;
  private waiters: Waiter[] = [];
  /** Values derived from the mirror (the sorted list, the topology), dropped on every change to it. */
  private derived = new Map<string, unknown>();
  private readonly catchUpMs: number;
  private readonly now: () => number;

  constructor(
    private readonly watcher: ViewSource,
    opts: RegistryViewOptions = {},
  ) {
    this.catchUpMs = opts.catchUpMs ?? DEFAULT_CATCH_UP_MS;
    this.now = opts.now ?? Date.now;
    this.staleSince = watcher.live ? undefined : this.now();
    watcher.on('revision', (revision) => this.advance(BigInt(revision)));
    watcher.on('update', () => this.derived.clear());
    watcher.on('status', ({ live }) => {
      if (live) this.staleSince = undefined;
      else this.staleSince ??= this.now();
    });
  }

  /** The store committed a write at `revision` (wired to MeshStore's `onCommit`). */
  noteWrite(revision: string): void {
    const rev = BigInt(revision);
    if (rev > this.written) this.written = rev;
  }

  /** The first snapshot is loaded. */
  get ready(): boolean {
    return this.watcher.ready;
  }

  get revision(): string {
    return this.reached.toString();
  }

  /** The service as the mirror holds it now, caught up or not (a write checks its revision itself). */
  service(name: string): Versioned<ServiceRecord> | undefined {
    return this.watcher.state.services.get(name);
  }

  /** Seconds since the mirror was last known to follow etcd: 0 while the watch runs. */
  ageSeconds(): number {
    return this.staleSince === undefined ? 0 : (this.now() - this.staleSince) / 1000;
  }

  /**
   * The mirror, once it holds every write this process committed; undefined when
   * it does not get there within the catch-up time (the caller then reads etcd).
   */
  caughtUp(): MeshState | undefined | Promise<MeshState | undefined> {
    const target = this.written;
    if (this.watcher.ready && this.reached >= target) return this.watcher.state;
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        revision: target,
        resolve,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve(false);
        }, this.catchUpMs),
      };
      this.waiters.push(waiter);
    }).then((ok) => (ok ? this.watcher.state : undefined));
  }

  /** `build` once per state of the mirror: reads between two changes share the result. */
  derive<T>(key: string, build: (state: MeshState) => T): T {
    if (this.derived.has(key)) return this.derived.get(key) as T;
    const value = build(this.watcher.state);
    this.derived.set(key, value);
    return value;
  }

  /** Releases waiting reads (to etcd) and closes the watch. */
  async close(): Promise<void> {
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(false);
    }
    this.waiters = [];
    await this.watcher.close();
  }

  private advance(revision: bigint): void {
    // A reset (compaction recovery) may load a snapshot; it is never older than what was applied.
    this.reached = revision;
    if (this.waiters.length === 0) return;
    const waiting: Waiter[] = [];
    for (const waiter of this.waiters) {
      if (revision >= waiter.revision) {
        clearTimeout(waiter.timer);
        waiter.resolve(true);
      } else waiting.push(waiter);
    }
    this.waiters = waiting;
  }
}
