// One incremental (Delta) ADS stream's protocol state (pump and push order:
// ads-session.ts). Same rules as the state-of-the-world session (stale nonces
// ignored, one unanswered response per type, NACKed content never resent,
// make-before-break order), but per resource:
// the server tracks which version of each resource the client holds and sends
// only what differs, plus the names that went away. Envoy does not ask again
// on a Delta stream for what it is already subscribed to, so two things are sent
// although the client holds them: a resource it subscribes to again, and the
// endpoints of a cluster it just re-created (it waits, warming, for them).
import { byName } from '@trellis/mesh-contracts';
import { TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { endpointsNameOf, type XdsResource } from '../resource';
import { AdsSession } from './ads-session';
import { convergenceStart, endpointsPending, endpointWaitMs, ROUTING_TYPES } from './push-order';
import { nackReason, servedTypeUrl, sentResponse, WILDCARD_TYPES } from './session-common';
import type { ProxySnapshot } from './snapshot-cache';

/** A resource's version in Delta xDS: its content hash, shortened. */
export function resourceVersion(resource: XdsResource): string {
  return resource.hash.slice(0, 16);
}

interface Pending {
  nonce: string;
  upserts: ReadonlyMap<string, XdsResource>;
  removals: string[];
  systemVersion: string;
  changedAt: number;
  /** The mesh revision the response was built from: a NACK names it, whatever is current by then. */
  meshRevision: string;
}

interface TypeState {
  wildcard: boolean;
  names: Set<string>;
  /** Resource versions the client holds (acknowledged). */
  client: Map<string, string>;
  /** Versions the client rejected: not resent until the resource's content changes. */
  rejected: Map<string, string>;
  rejectedRemovals: Set<string>;
  /** Explicitly subscribed names we have told the client do not exist. */
  toldMissing: Set<string>;
  /** Names to send even though the client holds their current version (see the header). */
  resend: Set<string>;
  pending: Pending | undefined;
  /**
   * A response of this type went out on this stream. Envoy does not finish
   * initialising until it has an answer to its first CDS and LDS requests, so the
   * first request is answered even when there is nothing to send (as
   * go-control-plane does); later, an empty diff sends nothing.
   */
  answered: boolean;
  ackedAt?: number;
}

interface Changes {
  upserts: XdsResource[];
  removals: string[];
}

export class DeltaSession extends AdsSession<DeltaDiscoveryResponse> {
  private readonly types = new Map<XdsTypeUrl, TypeState>();

  override setSnapshot(snapshot: ProxySnapshot): void {
    // A rejected removal is tried again once the type's content changed.
    if (this.snapshot) {
      for (const [typeUrl, state] of this.types) {
        if (this.snapshot.types.get(typeUrl)?.version !== snapshot.types.get(typeUrl)?.version) state.rejectedRemovals.clear();
      }
    }
    super.setSnapshot(snapshot);
  }

  handleRequest(request: DeltaDiscoveryRequest): boolean {
    const typeUrl = servedTypeUrl(request.typeUrl);
    if (typeUrl === undefined) return false;
    let state = this.types.get(typeUrl);

    if (request.responseNonce !== '') {
      const pending = state?.pending;
      if (!state || !pending || pending.nonce !== request.responseNonce) {
        this.callbacks.onStaleRequest(this.stream, typeUrl);
        // A stale ACK may still carry subscription changes; those are applied below.
        if (!state) return true;
      } else {
        state.pending = undefined;
        if (request.errorDetail) {
          for (const [name, resource] of pending.upserts) state.rejected.set(name, resourceVersion(resource));
          for (const name of pending.removals) state.rejectedRemovals.add(name);
          this.callbacks.onNack(this.stream, typeUrl, pending.systemVersion, nackReason(request.errorDetail), pending.meshRevision);
        } else {
          for (const [name, resource] of pending.upserts) state.client.set(name, resourceVersion(resource));
          for (const name of pending.removals) state.client.delete(name);
          if (typeUrl === TypeUrl.Cluster) this.resendEndpointsOf(pending.upserts.values());
          state.ackedAt = Date.now();
          this.callbacks.onAck(this.stream, typeUrl, pending.systemVersion, pending.changedAt);
        }
      }
    }

    if (!state) {
      state = {
        wildcard: request.resourceNamesSubscribe.length === 0 && WILDCARD_TYPES.has(typeUrl),
        names: new Set(),
        client: new Map(Object.entries(request.initialResourceVersions)),
        rejected: new Map(),
        rejectedRemovals: new Set(),
        toldMissing: new Set(),
        resend: new Set(),
        pending: undefined,
        answered: false,
      };
      this.types.set(typeUrl, state);
    }
    for (const name of request.resourceNamesSubscribe) {
      if (name === '*') state.wildcard = true;
      else if (state.names.has(name)) {
        // A re-subscription is answered, whatever the client holds (cf. go-control-plane issue 583).
        state.resend.add(name);
        state.toldMissing.delete(name);
      } else state.names.add(name);
    }
    for (const name of request.resourceNamesUnsubscribe) {
      if (name === '*') state.wildcard = false;
      else {
        state.names.delete(name);
        state.toldMissing.delete(name);
        state.resend.delete(name);
        if (!state.wildcard) state.client.delete(name);
      }
    }
    this.pumpSoon();
    return true;
  }

  /**
   * The client accepted these clusters, so Envoy (re)created them; each waits,
   * warming, for the endpoints it uses, which Envoy will not ask for again.
   */
  private resendEndpointsOf(clusters: Iterable<XdsResource>): void {
    const eds = this.types.get(TypeUrl.ClusterLoadAssignment);
    if (!eds) return;
    for (const cluster of clusters) {
      const endpoints = endpointsNameOf(cluster);
      if (endpoints !== undefined && eds.client.has(endpoints)) eds.resend.add(endpoints);
    }
  }

  /** Sends the type's resources the client does not hold at their current version, and the names that went away. */
  protected pushType(typeUrl: XdsTypeUrl, snapshot: ProxySnapshot): void {
    const state = this.types.get(typeUrl);
    if (!state || state.pending) return;
    const changes = this.changes(typeUrl, state, snapshot);
    if (state.answered && changes.upserts.length === 0 && changes.removals.length === 0) return;
    this.respond(typeUrl, state, changes, snapshot);
  }

  private respond(typeUrl: XdsTypeUrl, state: TypeState, changes: Changes, snapshot: ProxySnapshot): void {
    const nonce = this.nextNonce();
    const systemVersion = snapshot.types.get(typeUrl)!.version;
    const upserts = new Map(changes.upserts.map((r) => [r.name, r]));
    for (const name of changes.removals) if (!state.client.has(name)) state.toldMissing.add(name);
    // Every resend that could go out is in this response; the others were rejected versions.
    state.resend.clear();
    state.answered = true;
    state.pending = {
      nonce,
      upserts,
      removals: changes.removals,
      systemVersion,
      changedAt: convergenceStart(snapshot, this.connectedAtMs),
      meshRevision: snapshot.meshRevision,
    };
    this.transmit(
      {
        systemVersionInfo: systemVersion,
        resources: changes.upserts.map((r) => ({
          name: r.name,
          resourceName: undefined,
          aliases: [],
          version: resourceVersion(r),
          resource: r.any,
          ttl: undefined,
          cacheControl: undefined,
          metadata: undefined,
        })),
        typeUrl,
        removedResources: changes.removals,
        removedResourceNames: [],
        nonce,
        controlPlane: this.controlPlane,
      },
      sentResponse(typeUrl, systemVersion, nonce, changes.upserts, snapshot.meshRevision),
    );
  }

  /** Listeners and routes wait for unanswered clusters/endpoints and, briefly, for endpoints of new clusters. */
  protected clustersInFlight(snapshot: ProxySnapshot): boolean {
    const cds = this.types.get(TypeUrl.Cluster);
    const eds = this.types.get(TypeUrl.ClusterLoadAssignment);
    if (cds?.pending || eds?.pending) return true;
    if (!cds) return false;
    const endpoints = snapshot.types.get(TypeUrl.ClusterLoadAssignment)!.resources;
    const clusters = snapshot.types.get(TypeUrl.Cluster)!.resources;
    const held = [...cds.client.keys()].flatMap((name) => clusters.get(name) ?? []);
    const wait = endpointWaitMs(cds.ackedAt, () => endpointsPending(held, endpoints, (name) => Boolean(eds?.client.has(name))));
    if (wait === 0) return false;
    this.pumpAfter(wait);
    return true;
  }

  private changes(typeUrl: XdsTypeUrl, state: TypeState, snapshot: ProxySnapshot): Changes {
    const available = snapshot.types.get(typeUrl)!.resources;
    const upserts: XdsResource[] = [];
    const removals: string[] = [];
    const consider = (resource: XdsResource): void => {
      const version = resourceVersion(resource);
      const outdated = state.client.get(resource.name) !== version || state.resend.has(resource.name);
      if (outdated && state.rejected.get(resource.name) !== version) upserts.push(resource);
    };
    if (state.wildcard) for (const resource of available.values()) consider(resource);
    for (const name of state.names) {
      const resource = available.get(name);
      if (resource) {
        if (!state.wildcard) consider(resource);
      } else if (!state.client.has(name) && !state.toldMissing.has(name)) {
        removals.push(name);
      }
    }
    const gone: string[] = [];
    for (const name of state.client.keys()) {
      const subscribed = state.wildcard || state.names.has(name);
      if (subscribed && !available.has(name) && !state.rejectedRemovals.has(name)) gone.push(name);
    }
    // Clusters that go away stay until listeners and routes no longer point at them. Asked only when one went:
    // every pump asks for the clusters' changes, and the answer costs the routing types' changes.
    if (gone.length > 0 && (typeUrl !== TypeUrl.Cluster || this.routingSettled(snapshot))) removals.push(...gone);
    upserts.sort(byName);
    return { upserts, removals: removals.length === 0 ? removals : [...new Set(removals)].sort() };
  }

  private routingSettled(snapshot: ProxySnapshot): boolean {
    for (const typeUrl of ROUTING_TYPES) {
      const state = this.types.get(typeUrl);
      if (!state) continue;
      if (state.pending) return false;
      const changes = this.changes(typeUrl, state, snapshot);
      if (changes.upserts.length > 0 || changes.removals.length > 0) return false;
      for (const [name, version] of state.rejected) {
        // A rejected listener or route means the proxy still runs its older config.
        const current = snapshot.types.get(typeUrl)!.resources.get(name);
        if (current && resourceVersion(current) === version) return false;
      }
    }
    return true;
  }
}
