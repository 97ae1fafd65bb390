// Make-before-break rules both ADS sessions share (Envoy's "eventual consistency
// considerations"): clusters before the endpoints they use, both before the
// listeners and routes that point at them, and removals last.
import { TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import { endpointsNameOf, type XdsResource } from '../resource';
import type { ProxySnapshot } from './snapshot-cache';

/** How long listeners and routes wait for a client to ask for a new cluster's endpoints. */
export const ENDPOINT_WAIT_MS = 2000;

/** Listeners and routes: they point at clusters, so they change after them. */
export const ROUTING_TYPES: ReadonlySet<XdsTypeUrl> = new Set([TypeUrl.Listener, TypeUrl.RouteConfiguration]);

/**
 * How much longer listeners and routes wait, after the client accepted clusters
 * at `clustersAckedAt`, for endpoints it has not received yet; 0 means go on (a
 * client that never asks is waited for at most ENDPOINT_WAIT_MS).
 */
export function endpointWaitMs(clustersAckedAt: number | undefined, endpointsStillPending: () => boolean, now = Date.now()): number {
  if (clustersAckedAt === undefined) return 0;
  const waited = now - clustersAckedAt;
  if (waited >= ENDPOINT_WAIT_MS || !endpointsStillPending()) return 0;
  return ENDPOINT_WAIT_MS - waited;
}

/**
 * Whether some cluster the client holds has endpoints in the snapshot that the
 * client has not received yet (its EDS request follows the CDS ACK).
 */
export function endpointsPending(
  clusters: Iterable<XdsResource>,
  endpoints: ReadonlyMap<string, XdsResource>,
  clientHasEndpoints: (name: string) => boolean,
): boolean {
  for (const cluster of clusters) {
    const name = endpointsNameOf(cluster);
    if (name !== undefined && endpoints.has(name) && !clientHasEndpoints(name)) return true;
  }
  return false;
}

/**
 * Start of the convergence measurement for a response: when the change behind
 * the snapshot was first seen — but only for changes made while this stream was
 * connected (a fresh stream catching up is not convergence).
 */
export function convergenceStart(snapshot: ProxySnapshot, streamConnectedAtMs: number): number {
  return snapshot.changedAt >= streamConnectedAtMs ? snapshot.changedAt : 0;
}
