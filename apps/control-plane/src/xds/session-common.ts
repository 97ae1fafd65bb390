// What the SotW and Delta ADS sessions do the same way: which types they serve,
// which may be subscribed as a wildcard, when their pump runs, how a NACK reads
// and what observers are told about a response. Make-before-break rules live
// in push-order.ts.
import { ADS_PUSH_ORDER, TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import type { XdsResource } from '../resource';
import type { SentResponse } from './callbacks';

/** Each served type URL, by itself: a lookup returns the constant, not the string just decoded from the request. */
const KNOWN_TYPES = new Map<string, XdsTypeUrl>(ADS_PUSH_ORDER.map((typeUrl) => [typeUrl, typeUrl]));

/**
 * Types where an empty first subscription means "everything" (legacy wildcard);
 * in SotW a listener or cluster absent from a response no longer exists.
 */
export const WILDCARD_TYPES = new Set<string>([TypeUrl.Listener, TypeUrl.Cluster]);

/**
 * The served type a request names, as the shared constant (undefined for a type not served).
 * A request's type URL is a fresh ~60-character string; the session state, metric labels and
 * status records it indexes are then looked up with a string whose hash is already known.
 */
export function servedTypeUrl(typeUrl: string): XdsTypeUrl | undefined {
  return KNOWN_TYPES.get(typeUrl);
}

/** The reason a NACK gives, for logs and the proxy status. */
export function nackReason(errorDetail: { code: number; message: string }): string {
  return errorDetail.message || `code ${errorDetail.code}`;
}

/** What observers learn about a response (resources shared, never copied). */
export function sentResponse(
  typeUrl: XdsTypeUrl,
  version: string,
  nonce: string,
  resources: readonly XdsResource[],
  meshRevision: string,
  bytes = resources.reduce((sum, r) => sum + r.any.value.length, 0),
): SentResponse {
  return { typeUrl, version, nonce, resources: resources.length, sent: resources, bytes, meshRevision };
}

/** A SotW response's resources in order, their `Any`s and their size: what every response with them sends. */
export interface ResponseResources {
  readonly resources: readonly XdsResource[];
  /** One array for every response with these resources: the encoder writes their bytes once (wire.ts). */
  readonly anys: readonly Any[];
  readonly bytes: number;
}

// Snapshot maps are never changed once handed out, and a type is shared by the streams of an identity
// (and by sidecar identities of equal content): listed once per map, not once per response.
const listed = new WeakMap<ReadonlyMap<string, XdsResource>, ResponseResources>();

/** The resources of a map (its built ones, in its order) as responses send them. */
export function responseResources(map: ReadonlyMap<string, XdsResource>): ResponseResources {
  let found = listed.get(map);
  if (!found) {
    const resources = [...map.values()];
    const bytes = resources.reduce((sum, r) => sum + r.any.value.length, 0);
    listed.set(map, (found = { resources, anys: Object.freeze(resources.map((r) => r.any)), bytes }));
  }
  return found;
}

/**
 * Where a session's request-driven pump may wait: it calls `run` now, or later (the snapshot cache
 * holds it while a change is being fanned out: SnapshotCache.afterFanOut).
 */
export type PumpGate = (run: () => void) => void;

/** When a session's pump runs besides right away: soon, or after a wait; never after close. */
export class PumpScheduler {
  private immediate: NodeJS.Immediate | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** A run handed to the gate and not yet done: it pumps whatever arrives meanwhile. */
  private gated = false;
  private closed = false;

  constructor(
    private readonly pump: () => void,
    private readonly gate?: PumpGate,
  ) {}

  /**
   * After the requests that arrived together are all read (an ACK and the
   * subscription it triggers, e.g. a CDS ACK and the EDS request for the new
   * clusters), so the next response is decided once; and through the gate, if any.
   */
  soon(): void {
    if (this.gated) return;
    this.immediate ??= setImmediate(() => {
      this.immediate = undefined;
      if (!this.gate) return this.pump();
      this.gated = true;
      this.gate(this.release);
    });
  }

  /** In `ms`, unless a later run is already due. */
  after(ms: number): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, ms);
  }

  close(): void {
    this.closed = true;
    if (this.immediate) clearImmediate(this.immediate);
    if (this.timer) clearTimeout(this.timer);
  }

  private readonly release = (): void => {
    this.gated = false;
    if (!this.closed) this.pump();
  };
}
