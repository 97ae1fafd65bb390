// The in-memory mirror of the records the control plane and authz act on, and
// the pure functions that build it from a snapshot and apply watch events to it.
// A key whose value is invalid is absent from the mirror, exactly as a fresh
// snapshot would leave it, so replaying events and re-reading always agree.
import type { z } from 'zod';
import { decodeValue, type Versioned } from './codec';
import { InvalidRecordError } from './errors';
import type { KeyLayout } from './keys';
import { AuthzPublicKey, InstanceDeregistration, InstanceRecord, MeshSettings, ServiceRecord } from './records';

export interface MeshState {
  /** The etcd revision the mirror reflects (snapshot revision, then the last applied event's). */
  revision: string;
  services: Map<string, Versioned<ServiceRecord>>;
  /** service name → instance id → instance. A service with no instances has no entry. */
  instances: Map<string, Map<string, InstanceRecord>>;
  /** service name → ids with a live deregistration tombstone: deleted on purpose, not expired. */
  deregistered: Map<string, Set<string>>;
  meshSettings?: MeshSettings;
  authzKeys: Map<string, AuthzPublicKey>;
  /** Keys the mirror holds no value for because what is stored there is unusable, by key. */
  invalid: Map<string, InvalidRecord>;
}

/** A stored value left out of the mirror, with why; consumers show these beside what they drop themselves. */
export interface InvalidRecord {
  key: string;
  kind: 'service' | 'instance' | 'deregistration' | 'meshSettings' | 'authzKey';
  /** The service name, `service/id` of an instance or its tombstone, or the kid of an authz key. */
  name: string;
  issues: string[];
  modRevision: string;
}

/** `invalid`: only the set of unusable records changed (the mirror's values did not). */
export type MeshChangeKind = 'service' | 'instance' | 'meshSettings' | 'authzKey' | 'invalid';

export interface MeshChange {
  kind: MeshChangeKind;
  type: 'put' | 'delete';
  /** For service and instance changes. */
  service?: string;
  /** Instance id, or the kid of an authz key. */
  id?: string;
  modRevision: string;
}

/** One key-value change, as read from a snapshot (always `put`) or a watch event. */
export interface KvEvent {
  type: 'put' | 'delete';
  key: string;
  value: Buffer;
  modRevision: string;
  createRevision: string;
  /** `value` as the key's record schema reads it, when already known (WrittenValues): not parsed again. */
  decoded?: unknown;
}

export type InvalidRecordHandler = (record: InvalidRecord) => void;

export function emptyMeshState(revision = '0'): MeshState {
  return { revision, services: new Map(), instances: new Map(), deregistered: new Map(), authzKeys: new Map(), invalid: new Map() };
}

/** Builds a mirror from every key of a consistent snapshot. */
export function buildMeshState(layout: KeyLayout, revision: string, kvs: KvEvent[], onInvalid: InvalidRecordHandler): MeshState {
  const state = emptyMeshState(revision);
  for (const kv of kvs) applyKvEvent(state, layout, kv, onInvalid);
  state.revision = revision;
  return state;
}

/**
 * Applies one event to `state` in place. Returns what changed in the mirror, or
 * undefined for keys it does not hold (history, proxy status, foreign keys) and
 * for events that leave it as it was (an invalid value for an absent key).
 */
export function applyKvEvent(state: MeshState, layout: KeyLayout, ev: KvEvent, onInvalid: InvalidRecordHandler): MeshChange | undefined {
  const parsed = layout.parse(ev.key);
  const kind = parsed?.kind;
  if (!parsed || !kind || !isMirrored(kind)) return undefined;
  const wasInvalid = state.invalid.delete(ev.key);
  const found: InvalidRecord[] = [];
  const record = (error: InvalidRecordError) => {
    const name =
      kind === 'instance' || kind === 'deregistration' ? `${parsed.service}/${parsed.id}` : (parsed.service ?? parsed.id ?? kind);
    const invalid: InvalidRecord = { key: ev.key, kind, name, issues: error.issues, modRevision: ev.modRevision };
    state.invalid.set(ev.key, invalid);
    found.push(invalid);
  };
  const change = applyValue(state, { ...parsed, kind }, ev, record);
  for (const invalid of found) onInvalid(invalid);
  if (change) return change;
  return wasInvalid || found.length > 0 ? { kind: 'invalid', type: ev.type, modRevision: ev.modRevision } : undefined;
}

type MirroredKind = InvalidRecord['kind'];
const MIRRORED: ReadonlySet<string> = new Set<MirroredKind>(['service', 'instance', 'deregistration', 'meshSettings', 'authzKey']);
function isMirrored(kind: string): kind is MirroredKind {
  return MIRRORED.has(kind);
}

function applyValue(
  state: MeshState,
  parsed: { kind: MirroredKind; service?: string; id?: string },
  ev: KvEvent,
  onInvalid: (error: InvalidRecordError) => void,
): MeshChange | undefined {
  const { modRevision } = ev;
  switch (parsed.kind) {
    case 'service': {
      const name = parsed.service!;
      const value =
        ev.type === 'put'
          ? decodeOwned(ServiceRecord, ev, onInvalid, (r) => r.spec.name === name, 'spec.name must match the key')
          : undefined;
      const had = state.services.delete(name);
      if (value) state.services.set(name, { value, modRevision, createRevision: ev.createRevision });
      return value || had ? { kind: 'service', type: value ? 'put' : 'delete', service: name, modRevision } : undefined;
    }
    case 'instance': {
      const service = parsed.service!;
      const id = parsed.id!;
      const value =
        ev.type === 'put'
          ? decodeOwned(InstanceRecord, ev, onInvalid, (r) => r.service === service && r.id === id, 'service and id must match the key')
          : undefined;
      const ofService = state.instances.get(service);
      const had = ofService?.delete(id) ?? false;
      if (value) {
        if (ofService) ofService.set(id, value);
        else state.instances.set(service, new Map([[id, value]]));
      } else if (ofService && ofService.size === 0) {
        state.instances.delete(service);
      }
      return value || had ? { kind: 'instance', type: value ? 'put' : 'delete', service, id, modRevision } : undefined;
    }
    case 'deregistration': {
      // Tombstones change no record the model reads; they only say why an instance left.
      const service = parsed.service!;
      const id = parsed.id!;
      const value =
        ev.type === 'put'
          ? decodeOwned(
              InstanceDeregistration,
              ev,
              onInvalid,
              (r) => r.service === service && r.id === id,
              'service and id must match the key',
            )
          : undefined;
      const ids = state.deregistered.get(service);
      if (value) {
        if (ids) ids.add(id);
        else state.deregistered.set(service, new Set([id]));
      } else if (ids) {
        ids.delete(id);
        if (ids.size === 0) state.deregistered.delete(service);
      }
      return undefined;
    }
    case 'meshSettings': {
      const value = ev.type === 'put' ? decodeOwned(MeshSettings, ev, onInvalid) : undefined;
      const had = state.meshSettings !== undefined;
      if (value) state.meshSettings = value;
      else delete state.meshSettings;
      return value || had ? { kind: 'meshSettings', type: value ? 'put' : 'delete', modRevision } : undefined;
    }
    case 'authzKey': {
      const kid = parsed.id!;
      const value =
        ev.type === 'put' ? decodeOwned(AuthzPublicKey, ev, onInvalid, (k) => k.kid === kid, 'kid must match the key') : undefined;
      const had = state.authzKeys.delete(kid);
      if (value) state.authzKeys.set(kid, value);
      return value || had ? { kind: 'authzKey', type: value ? 'put' : 'delete', id: kid, modRevision } : undefined;
    }
    default:
      return undefined;
  }
}

/** Decodes a value and checks it names the key it is stored at; reports and drops it otherwise. */
function decodeOwned<S extends z.ZodType>(
  schema: S,
  ev: KvEvent,
  onInvalid: (error: InvalidRecordError) => void,
  matchesKey?: (value: z.output<S>) => boolean,
  mismatch = 'value does not match its key',
): z.output<S> | undefined {
  try {
    const value = ev.decoded !== undefined ? (ev.decoded as z.output<S>) : decodeValue(schema, ev.key, ev.value);
    if (matchesKey && !matchesKey(value)) throw new InvalidRecordError(ev.key, [mismatch]);
    return value;
  } catch (err) {
    if (!(err instanceof InvalidRecordError)) throw err;
    onInvalid(err);
    return undefined;
  }
}
