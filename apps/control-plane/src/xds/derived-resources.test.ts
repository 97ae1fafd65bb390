import { TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import { ClusterLoadAssignment } from '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { buildProxyResources } from '../envoy';
import { MeshFixture } from '../model/mesh-fixture';
import type { ProxyIdentity } from '../resource';
import { DerivedResources, MAX_UNDECLARED_TARGETS } from './derived-resources';

function resourcesOf(typeUrl: XdsTypeUrl, identity: ProxyIdentity): DerivedResources {
  const model = new MeshFixture()
    .service('b', { protocol: 'grpc', port: 9000 })
    .service('a', { protocol: 'grpc', port: 9100, dependencies: [{ service: 'b' }] })
    .model();
  const map = new DerivedResources(typeUrl, identity);
  for (const resource of buildProxyResources(model, identity).get(typeUrl)!.values()) map.set(resource.name, resource);
  return map;
}

const proxylessA: ProxyIdentity = { service: 'a', kind: 'proxyless' };

describe('DerivedResources', () => {
  it('answers a proxyless client dialing a target its service did not declare, whether or not the target exists', () => {
    const listeners = resourcesOf(TypeUrl.Listener, proxylessA);
    const clusters = resourcesOf(TypeUrl.Cluster, proxylessA);
    const endpoints = resourcesOf(TypeUrl.ClusterLoadAssignment, proxylessA);
    for (const target of ['c', 'no-such-service']) {
      expect(listeners.get(target)).toMatchObject({ name: target, typeUrl: TypeUrl.Listener });
      expect(clusters.get(`refused|${target}`)).toMatchObject({ typeUrl: TypeUrl.Cluster });
      // The drop category is the reason the client's call reports.
      const assignment = ClusterLoadAssignment.decode(endpoints.get(`refused|${target}`)!.any.value);
      expect(assignment.policy?.dropOverloads).toMatchObject([
        {
          category: `trellis: a has not declared a dependency on ${target}; declare it in the registry to call xds:///${target}`,
          dropPercentage: { numerator: 100, denominator: 0 },
        },
      ]);
    }
    // Made once per snapshot: the same resource (and so the same version) on every ask.
    expect(listeners.get('c')).toBe(listeners.get('c'));
    // A declared target is what translation built; derived answers are not the map's own entries.
    expect(listeners.built('b') && !listeners.built('c')).toBe(true);
    expect([...listeners.keys()]).toEqual(['b', 'grpc/server?xds.resource.listening_address=0.0.0.0:9100']);
  });

  it('derives nothing for a name that is not a service name, nor for an Envoy sidecar, nor for routes', () => {
    const listeners = resourcesOf(TypeUrl.Listener, proxylessA);
    const clusters = resourcesOf(TypeUrl.Cluster, proxylessA);
    for (const name of ['', 'Not_A_Name', 'b.example.com', 'trellis-xds', 'x'.repeat(64)]) {
      expect(listeners.get(name)).toBeUndefined();
      expect(clusters.get(`refused|${name}`)).toBeUndefined();
    }
    expect(clusters.get('c')).toBeUndefined();
    expect(resourcesOf(TypeUrl.Listener, { service: 'a', kind: 'envoy' }).get('c')).toBeUndefined();
    expect(resourcesOf(TypeUrl.RouteConfiguration, proxylessA).get('c')).toBeUndefined();
  });

  it('answers a bounded number of undeclared targets: a stream naming thousands buys no more work', () => {
    const listeners = resourcesOf(TypeUrl.Listener, proxylessA);
    const answered = Array.from({ length: MAX_UNDECLARED_TARGETS + 100 }, (_, i) => listeners.get(`made-up-${i}`)).filter(Boolean);
    expect(answered).toHaveLength(MAX_UNDECLARED_TARGETS);
    // Those already answered keep their answer; what translation built and server listeners are not capped.
    expect(listeners.get('made-up-0')).toBeDefined();
    expect(listeners.get('b')).toBeDefined();
    expect(listeners.get('grpc/server?xds.resource.listening_address=10.9.9.9:9100')).toBeDefined();
  });

  it('rebinds the service’s server listener to the address a proxyless server asks for', () => {
    const listeners = resourcesOf(TypeUrl.Listener, proxylessA);
    const name = 'grpc/server?xds.resource.listening_address=10.1.2.3:9100';
    const listener = Listener.decode(listeners.get(name)!.any.value);
    expect(listener.name).toBe(name);
    expect(listener.address?.address).toMatchObject({ $case: 'socketAddress', value: { address: '10.1.2.3' } });
  });
});
