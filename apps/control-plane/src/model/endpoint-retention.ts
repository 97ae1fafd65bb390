// Endpoint retention: when a large share of a service's endpoints vanish by
// lease expiry together, they stay in the model for a grace period instead of
// being pushed away. A stalled etcd (SIGSTOP, a long fsync, a partition of the
// leader) expires every lease at once when it resumes; without this, every
// proxy would be pushed an empty endpoint list while the instances themselves
// are fine and about to register again. Envoy's panic threshold and Istio's
// endpoint retention answer the same failure the same way.
//
// Only expiries count. etcd reports a lease expiry and a delete as the same
// DELETE event, so the registry writes a tombstone (`deregistered/<service>/<id>`)
// in the txn that deregisters an instance on purpose; an instance that leaves
// while its tombstone is mirrored is gone for good and never retained. The
// tombstone outlives any grace period (its own 600 s lease), so a snapshot
// reloaded after a compaction classifies a departure the same way.
//
// Pure: the caller passes the mirror and the clock; the control plane calls
// observe() before each model build and rebuilds again at nextDeadline().
import type { InstanceRecord } from '@trellis/mesh-schema';

export interface RetentionSettings {
  /**
   * Retention engages when more than this share (0–1) of a service's endpoints
   * expire within `windowMs`, or when the expiries would leave it with none.
   */
  share: number;
  windowMs: number;
  /** How long an endpoint lost that way is kept (0 turns retention off). */
  graceMs: number;
}

export const DEFAULT_RETENTION_SETTINGS: RetentionSettings = { share: 0.5, windowMs: 10_000, graceMs: 60_000 };

/** The part of the watcher's MeshState retention reads. */
export interface RetentionInput {
  services: { has(name: string): boolean };
  instances: ReadonlyMap<string, ReadonlyMap<string, InstanceRecord>>;
  deregistered: ReadonlyMap<string, ReadonlySet<string>>;
}

export interface RetainedEndpoint {
  service: string;
  id: string;
  address: string;
  port: number;
  expiredAt: number;
  until: number;
}

export interface RetentionChange {
  /** Services whose retention engaged in this observation (log and count these). */
  engaged: { service: string; expired: number; live: number }[];
  /** Endpoints released (back live, deregistered, replaced, or past their grace). */
  released: number;
}

interface Expiry {
  record: InstanceRecord;
  at: number;
}
interface Retained extends Expiry {
  until: number;
}

export class EndpointRetention {
  /** What each service had live at the last observation: the baseline departures are found against. */
  private readonly known = new Map<string, Map<string, InstanceRecord>>();
  /** Endpoints that expired within the window, retained or not. */
  private readonly recent = new Map<string, Map<string, Expiry>>();
  private readonly retained = new Map<string, Map<string, Retained>>();
  /** Endpoints a service had when retention engaged: once that many are live again, the rest are let go. */
  private readonly baseline = new Map<string, number>();

  constructor(private readonly settings: RetentionSettings = DEFAULT_RETENTION_SETTINGS) {}

  /**
   * Compares `state` with the last observation for `services` (every service
   * after a reset) and updates what is retained. Services with retained
   * endpoints are always looked at, so grace periods end on time.
   */
  observe(state: RetentionInput, services: Iterable<string> | 'all', now: number): RetentionChange {
    const change: RetentionChange = { engaged: [], released: 0 };
    const names = new Set(services === 'all' ? [...this.known.keys(), ...state.instances.keys()] : services);
    for (const name of this.retained.keys()) names.add(name);
    for (const name of this.recent.keys()) names.add(name);
    for (const name of names) this.observeService(state, name, now, change);
    return change;
  }

  /** `instances` with retained endpoints merged in (the same map when nothing is retained). */
  overlay(instances: ReadonlyMap<string, ReadonlyMap<string, InstanceRecord>>): ReadonlyMap<string, ReadonlyMap<string, InstanceRecord>> {
    if (this.retained.size === 0) return instances;
    const merged = new Map(instances);
    for (const [service, kept] of this.retained) {
      const withKept = new Map(instances.get(service) ?? []);
      for (const [id, r] of kept) withKept.set(id, r.record);
      merged.set(service, withKept);
    }
    return merged;
  }

  /** When the next grace period ends (undefined: nothing retained). */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const kept of this.retained.values()) for (const r of kept.values()) next = Math.min(next ?? Infinity, r.until);
    return next;
  }

  /** Every endpoint retained now, sorted (for /debug and metrics). */
  list(): RetainedEndpoint[] {
    const out: RetainedEndpoint[] = [];
    for (const [service, kept] of this.retained)
      for (const [id, r] of kept)
        out.push({ service, id, address: r.record.address, port: r.record.port, expiredAt: r.at, until: r.until });
    return out.sort((a, b) => a.service.localeCompare(b.service) || a.id.localeCompare(b.id));
  }

  private observeService(state: RetentionInput, service: string, now: number, change: RetentionChange): void {
    const live = state.instances.get(service);
    const before = this.known.get(service);
    if (live && live.size > 0) this.known.set(service, new Map(live));
    else this.known.delete(service);
    if (!state.services.has(service) || this.settings.graceMs <= 0) {
      change.released += this.retained.get(service)?.size ?? 0;
      this.forget(service);
      return;
    }
    const recent = this.recent.get(service) ?? new Map<string, Expiry>();
    const kept = this.retained.get(service) ?? new Map<string, Retained>();
    const tombstones = state.deregistered.get(service);

    for (const [id, record] of before ?? []) {
      if (live?.has(id)) continue;
      if (tombstones?.has(id)) continue; // deregistered on purpose
      recent.set(id, { record, at: now });
    }
    // Back, deregistered after all, or expired too long ago: no longer a candidate.
    for (const [id, e] of recent) if (live?.has(id) || tombstones?.has(id) || e.at + this.settings.windowMs <= now) recent.delete(id);

    const liveCount = live?.size ?? 0;
    const expiredCount = recent.size;
    if (expiredCount > 0 && (liveCount === 0 || expiredCount / (liveCount + expiredCount) > this.settings.share)) {
      let added = 0;
      for (const [id, e] of recent) {
        if (kept.has(id)) continue;
        kept.set(id, { ...e, until: e.at + this.settings.graceMs });
        added++;
      }
      if (added > 0) {
        this.baseline.set(service, Math.max(this.baseline.get(service) ?? 0, liveCount + kept.size));
        change.engaged.push({ service, expired: expiredCount, live: liveCount });
      }
    }

    const liveAddresses = new Set([...(live?.values() ?? [])].map((r) => `${r.address}:${r.port}`));
    const recovered = liveCount >= (this.baseline.get(service) ?? Infinity);
    for (const [id, r] of kept) {
      const release =
        recovered ||
        live?.has(id) || // registered again
        tombstones?.has(id) ||
        liveAddresses.has(`${r.record.address}:${r.record.port}`) || // replaced by a new registration
        r.until <= now;
      if (release) {
        kept.delete(id);
        change.released++;
      }
    }

    if (recent.size > 0) this.recent.set(service, recent);
    else this.recent.delete(service);
    if (kept.size > 0) this.retained.set(service, kept);
    else {
      this.retained.delete(service);
      this.baseline.delete(service);
    }
  }

  private forget(service: string): void {
    this.recent.delete(service);
    this.retained.delete(service);
    this.baseline.delete(service);
  }
}
