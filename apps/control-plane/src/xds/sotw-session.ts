// One state-of-the-world ADS stream's protocol state (transport-agnostic: the
// server hands it requests and a `send`; when it pushes and in which order is
// ads-session.ts). Rules it keeps:
// - a request whose nonce is not the latest one sent for its type is stale and ignored;
// - at most one unanswered response per type; newer config waits for the ACK/NACK
//   and then only the latest is sent (bursts coalesce, memory stays bounded);
// - a NACKed version is never resent: the type stays quiet until its content changes
//   (no resend loop, cf. go-control-plane issue 962);
// - make-before-break: clusters and endpoints are answered before listeners and
//   routes change, and clusters that disappear stay until listeners and routes
//   that could still reference them are acknowledged;
// - nothing is sent when the version a proxy holds is already the current one, except
//   that the first request of each type on a stream is always answered (a reconnect).
import { compareStrings, sortInPlace } from '@trellis/mesh-contracts';
import { TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import type { DiscoveryRequest, DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import type { XdsResource } from '../resource';
import { AdsSession } from './ads-session';
import { DerivedResources } from './derived-resources';
import { convergenceStart, endpointsPending, endpointWaitMs, ROUTING_TYPES } from './push-order';
import { nackReason, responseResources, servedTypeUrl, sentResponse, WILDCARD_TYPES } from './session-common';
import type { ProxySnapshot, TypeSnapshot } from './snapshot-cache';
import { versionOf } from './versions';

interface Sent {
  version: string;
  nonce: string;
  resources: ReadonlyMap<string, XdsResource>;
  changedAt: number;
  /** The mesh revision the response was built from: a NACK names it, whatever is current by then. */
  meshRevision: string;
  /** Sent and not yet answered by an ACK or NACK. */
  inFlight: boolean;
}

interface TypeState {
  wildcard: boolean;
  /** Replaced, never changed: a subscription of no names (every wildcard type's) is the one shared NO_NAMES. */
  names: ReadonlySet<string>;
  /** The last response sent, or what the client said it holds when it reconnected. */
  sent: Sent | undefined;
  ackedVersion: string | undefined;
  ackedAt?: number;
  /** Answer the next time even if the version is unchanged (a reconnect; see clustersReplaced). */
  resend?: boolean;
  /** The subscribed part of the last snapshot's type, kept while neither changes. */
  picked?: { type: TypeSnapshot; names: ReadonlySet<string>; desired: Desired };
}

interface Desired {
  version: string;
  resources: ReadonlyMap<string, XdsResource>;
}

export class SotwSession extends AdsSession<DiscoveryResponse> {
  private readonly types = new Map<XdsTypeUrl, TypeState>();
  /**
   * The proxy accepted changed clusters. Envoy re-creates a changed EDS cluster and
   * asks for its endpoints again with the version it already has; without an answer
   * (and without Envoy's EDS cache) the cluster would stay warming. So the next EDS
   * request that is not an ACK is answered even when nothing changed.
   */
  private clustersReplaced = false;

  /** Returns false when the request names a type this server does not serve. */
  handleRequest(request: DiscoveryRequest): boolean {
    const typeUrl = servedTypeUrl(request.typeUrl);
    if (typeUrl === undefined) return false;
    let state = this.types.get(typeUrl);

    if (request.responseNonce !== '') {
      if (!state?.sent || state.sent.nonce !== request.responseNonce) {
        this.callbacks.onStaleRequest(this.stream, typeUrl);
        return true;
      }
      const sent = state.sent;
      if (!sent.inFlight && typeUrl === TypeUrl.ClusterLoadAssignment && this.clustersReplaced) state.resend = true;
      if (sent.inFlight) {
        sent.inFlight = false;
        if (request.errorDetail) {
          this.callbacks.onNack(this.stream, typeUrl, sent.version, nackReason(request.errorDetail), sent.meshRevision);
        } else {
          if (typeUrl === TypeUrl.Cluster && state.ackedVersion !== sent.version) this.clustersReplaced = true;
          state.ackedVersion = sent.version;
          state.ackedAt = Date.now();
          this.callbacks.onAck(this.stream, typeUrl, sent.version, sent.changedAt);
        }
      }
    }

    if (!state) {
      state = {
        wildcard: request.resourceNames.length === 0 && WILDCARD_TYPES.has(typeUrl),
        names: NO_NAMES,
        sent: undefined,
        ackedVersion: undefined,
        // Every field from the start: one object shape for all, which the per-pump code reads fast.
        ackedAt: undefined,
        resend: false,
        picked: undefined,
      };
      if (request.versionInfo !== '') {
        // Reconnect: the client already holds this version. It is answered even so, at the same version if
        // nothing changed (as Istio does): Envoy resets its reconnect backoff only on a response, and the
        // answer and its ACK confirm the new stream (its status record reads SYNCED, not NOT SENT).
        state.sent = { version: request.versionInfo, nonce: '', resources: new Map(), changedAt: 0, meshRevision: '', inFlight: false };
        state.ackedVersion = request.versionInfo;
        state.resend = true;
      }
      this.types.set(typeUrl, state);
    }
    if (request.resourceNames.includes('*')) state.wildcard = true;
    else if (request.resourceNames.length > 0) state.wildcard = false;
    // An ACK repeats the subscription: keep the same set, so the picked part of the snapshot stays valid (see desired).
    if (!sameNames(state.names, request.resourceNames)) state.names = subscribed(request.resourceNames);

    this.pumpSoon();
    return true;
  }

  /** Sends the type when its current version differs from what the client has. */
  protected pushType(typeUrl: XdsTypeUrl, snapshot: ProxySnapshot): void {
    const state = this.types.get(typeUrl);
    if (!state || state.sent?.inFlight) return;
    const desired = this.desired(typeUrl, state, snapshot);
    if (state.sent && state.sent.version === desired.version && !state.resend) return;
    // Listeners and clusters absent from a response do not exist (SotW), so a client asking for a
    // missing one learns that at once; for routes and endpoints an empty first answer would say nothing.
    if (!state.sent && !state.wildcard && desired.resources.size === 0 && !WILDCARD_TYPES.has(typeUrl)) return;
    this.respond(typeUrl, state, desired, snapshot);
  }

  private respond(typeUrl: XdsTypeUrl, state: TypeState, desired: Desired, snapshot: ProxySnapshot): void {
    const nonce = this.nextNonce();
    const { resources, anys, bytes } = responseResources(desired.resources);
    state.resend = false;
    if (typeUrl === TypeUrl.ClusterLoadAssignment) this.clustersReplaced = false;
    state.sent = {
      version: desired.version,
      nonce,
      resources: desired.resources,
      changedAt: convergenceStart(snapshot, this.connectedAtMs),
      meshRevision: snapshot.meshRevision,
      inFlight: true,
    };
    this.transmit(
      {
        versionInfo: desired.version,
        // The shared array (never changed): the encoder writes these resources' bytes once for every stream.
        resources: anys as Any[],
        canary: false,
        typeUrl,
        nonce,
        controlPlane: this.controlPlane,
      },
      sentResponse(typeUrl, desired.version, nonce, resources, snapshot.meshRevision, bytes),
    );
  }

  /**
   * Listeners and routes wait while clusters or endpoints are unanswered, and
   * while a cluster the proxy just accepted has endpoints it has not asked for
   * yet (its EDS request follows the CDS ACK), for at most ENDPOINT_WAIT_MS.
   */
  protected clustersInFlight(snapshot: ProxySnapshot): boolean {
    const cds = this.types.get(TypeUrl.Cluster);
    const eds = this.types.get(TypeUrl.ClusterLoadAssignment);
    if (cds?.sent?.inFlight || eds?.sent?.inFlight) return true;
    const clusters = cds?.sent?.resources;
    if (!clusters) return false;
    const endpoints = snapshot.types.get(TypeUrl.ClusterLoadAssignment)!.resources;
    const wait = endpointWaitMs(cds.ackedAt, () =>
      endpointsPending(clusters.values(), endpoints, (name) =>
        Boolean(eds && (eds.wildcard || eds.names.has(name)) && eds.sent?.resources.has(name)),
      ),
    );
    if (wait === 0) return false;
    this.pumpAfter(wait);
    return true;
  }

  private desired(typeUrl: XdsTypeUrl, state: TypeState, snapshot: ProxySnapshot): Desired {
    const type = snapshot.types.get(typeUrl)!;
    let desired: Desired;
    if (state.wildcard) {
      desired = type;
    } else if (state.picked?.type === type && state.picked.names === state.names) {
      // Asked again with the same subscription and snapshot (every pump asks): no new hashing.
      desired = state.picked.desired;
    } else {
      const picked = sortInPlace(
        [...state.names].filter((name) => type.resources.has(name)),
        compareStrings,
      );
      // A subscription to every resource of the type (a sidecar's EDS and RDS, typically) is the type itself, version included.
      // Only when every picked name is one translation built: a map may also answer other names (derived-resources.ts).
      const everything = picked.length === type.resources.size && picked.every((name) => builtBy(type, name));
      const resources = everything ? type.resources : new Map(picked.map((name) => [name, type.resources.get(name)!]));
      desired = everything ? type : { version: versionOf(resources.values()), resources };
      state.picked = { type, names: state.names, desired };
    }
    // Keep clusters that are going away until no listener or route can still point at them. Every pump asks for
    // clusters: whether listeners and routes settled is asked only when some cluster goes.
    if (typeUrl === TypeUrl.Cluster && state.sent && someGone(state.sent.resources, desired.resources) && !this.routingSettled(snapshot)) {
      const kept = [...state.sent.resources.values()].filter((r) => !desired.resources.has(r.name));
      const resources = new Map([...desired.resources, ...kept.map((r) => [r.name, r] as const)].sort(([a], [b]) => compareStrings(a, b)));
      desired = { version: versionOf(resources.values()), resources };
    }
    return desired;
  }

  /** Listeners and routes are acknowledged at their current versions. */
  private routingSettled(snapshot: ProxySnapshot): boolean {
    for (const typeUrl of ROUTING_TYPES) {
      const state = this.types.get(typeUrl);
      if (!state) continue;
      if (!state.sent || state.sent.inFlight || state.ackedVersion !== state.sent.version) return false;
      if (this.desired(typeUrl, state, snapshot).version !== state.sent.version) return false;
    }
    return true;
  }
}

/** Whether translation built `name` (rather than the map answering it, derived-resources.ts). */
function builtBy(type: TypeSnapshot, name: string): boolean {
  return type.resources instanceof DerivedResources ? type.resources.built(name) : type.resources.has(name);
}

/** Whether a resource held is absent from the map now (the same map: none). */
function someGone(held: ReadonlyMap<string, XdsResource>, now: ReadonlyMap<string, XdsResource>): boolean {
  if (held === now) return false;
  for (const name of held.keys()) if (!now.has(name)) return true;
  return false;
}

/**
 * No names subscribed: every stream's CDS and LDS (wildcard) hold this one set for good, so a connection storm does
 * not make four empty sets per stream, most kept as long as the stream (~20,000 at 5,000 streams).
 */
const NO_NAMES: ReadonlySet<string> = new Set();

/** A request's resource names besides the wildcard, as the set a type state holds. */
function subscribed(names: readonly string[]): ReadonlySet<string> {
  const set = new Set(names.filter((name) => name !== '*'));
  return set.size === 0 ? NO_NAMES : set;
}

/** Whether a request's resource names (besides the wildcard) are exactly the set held. */
function sameNames(held: ReadonlySet<string>, names: readonly string[]): boolean {
  let count = 0;
  for (const name of names) {
    if (name === '*') continue;
    if (!held.has(name)) return false;
    count++;
  }
  return count === held.size;
}
