import { TypeUrl } from '@trellis/envoy-types';
import { Cluster, Cluster_DiscoveryType } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { ClusterLoadAssignment } from '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import { endpointsNameOf, makeResource } from '../resource';
import { ENDPOINT_WAIT_MS, endpointsPending, endpointWaitMs } from './push-order';

function cluster(name: string, fields: Parameters<typeof Cluster.fromPartial>[0]) {
  return makeResource(TypeUrl.Cluster, Cluster, name, Cluster.fromPartial({ name, ...fields }));
}

describe('endpointsNameOf', () => {
  const eds = { $case: 'type', value: Cluster_DiscoveryType.EDS } as const;

  it('is the EDS service name when the cluster names one', () => {
    expect(endpointsNameOf(cluster('outbound|b~3', { clusterDiscoveryType: eds, edsClusterConfig: { serviceName: 'outbound|b' } }))).toBe(
      'outbound|b',
    );
  });

  it("is the cluster's own name when the EDS service name is empty", () => {
    expect(endpointsNameOf(cluster('outbound|b', { clusterDiscoveryType: eds, edsClusterConfig: { serviceName: '' } }))).toBe('outbound|b');
  });

  it('is undefined for clusters that do not use EDS', () => {
    const dns = cluster('authz', { clusterDiscoveryType: { $case: 'type', value: Cluster_DiscoveryType.STRICT_DNS } });
    expect(endpointsNameOf(dns)).toBeUndefined();
    expect(endpointsNameOf(dns)).toBeUndefined(); // and again from the per-resource cache
  });
});

describe('endpointsPending', () => {
  const eds = { $case: 'type', value: Cluster_DiscoveryType.EDS } as const;
  const b = cluster('b', { clusterDiscoveryType: eds });
  const c = cluster('c', { clusterDiscoveryType: eds });
  const split = cluster('b~3', { clusterDiscoveryType: eds, edsClusterConfig: { serviceName: 'b' } });
  const endpoints = new Map([
    ['b', makeResource(TypeUrl.ClusterLoadAssignment, ClusterLoadAssignment, 'b', ClusterLoadAssignment.fromPartial({ clusterName: 'b' }))],
  ]);

  it('is true while a cluster the client holds has endpoints the client lacks', () => {
    expect(endpointsPending([b, c], endpoints, () => false)).toBe(true);
    expect(endpointsPending([b, c], endpoints, (name) => name === 'b')).toBe(false);
    expect(endpointsPending([c], endpoints, () => false)).toBe(false);
  });

  it('looks for the endpoints a cluster names, not its own name', () => {
    const asked: string[] = [];
    expect(endpointsPending([split], endpoints, (name) => (asked.push(name), false))).toBe(true);
    expect(asked).toEqual(['b']);
  });
});

describe('endpointWaitMs', () => {
  const now = 1_000_000;

  it('waits out the rest of ENDPOINT_WAIT_MS while endpoints are pending', () => {
    expect(endpointWaitMs(now - 500, () => true, now)).toBe(ENDPOINT_WAIT_MS - 500);
  });

  it('goes on at once when nothing is pending, no clusters were accepted, or the wait is over', () => {
    expect(endpointWaitMs(now - 500, () => false, now)).toBe(0);
    expect(endpointWaitMs(undefined, () => true, now)).toBe(0);
    expect(endpointWaitMs(now - ENDPOINT_WAIT_MS, () => true, now)).toBe(0);
  });
});
