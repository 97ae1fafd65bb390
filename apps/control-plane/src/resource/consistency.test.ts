import { MeshFixture } from '../model/mesh-fixture';
import { buildProxyResources } from '../envoy/proxy-resources';
import { makeCluster, makeEndpoints, makeListener } from '../../test/support/resources';
import fc from 'fast-check';
import { packAny, TypeUrl, unpackAnyAs } from '@trellis/envoy-types';
import { Cluster, Cluster_DiscoveryType } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { SocketAddress_Protocol } from '@trellis/envoy-types/envoy/config/core/v3/address';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { HttpConnectionManager } from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import { TcpProxy } from '@trellis/envoy-types/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import { meshArbitrary, meshStateOf, propertyRuns } from '@trellis/mesh-schema/testing';
import { buildMeshModel, DEFAULT_TRANSLATOR_SETTINGS } from '../model';
import { references, snapshotInconsistencies, type References } from './consistency';
import { makeResource, toResourceSet, type XdsResource } from './xds-resource';

describe('snapshotInconsistencies', () => {
  it('names a route configuration a listener uses but the set lacks', () => {
    const model = new MeshFixture()
      .key('k1')
      .service('b', { port: 9000 })
      .service('a', { dependencies: [{ service: 'b' }] })
      .model();
    const set = buildProxyResources(model, { service: 'a', kind: 'proxyless' });
    set.get('type.googleapis.com/envoy.config.route.v3.RouteConfiguration')!.clear();
    expect(snapshotInconsistencies(set)).toEqual(['listener "b" uses route configuration "proxyless|b", which is not in the snapshot']);
  });

  it('names an EDS cluster without endpoints and a doubly bound address', () => {
    const set = toResourceSet([makeCluster('c'), makeListener('l1', 80), makeListener('l2', 80), makeListener('l3', 81)]);
    expect(snapshotInconsistencies(set)).toEqual([
      'listeners "l1" and "l2" both bind tcp 127.0.0.1:80',
      'cluster "c" uses endpoints "c", which are not in the snapshot',
    ]);
    expect(snapshotInconsistencies(toResourceSet([makeCluster('c'), makeEndpoints('c', '10.0.0.1:80')]))).toEqual([]);
  });
});

// The check reads references from the wire format field by field; a full decode is the reference it must agree with.
describe('references', () => {
  function decodedReferences(resource: XdsResource): References {
    if (resource.typeUrl === TypeUrl.Cluster) {
      const cluster = unpackAnyAs(Cluster, resource.any);
      const eds = cluster.clusterDiscoveryType?.$case === 'type' && cluster.clusterDiscoveryType.value === Cluster_DiscoveryType.EDS;
      return { routes: [], endpoints: eds ? [cluster.edsClusterConfig?.serviceName || cluster.name] : [] };
    }
    const listener = unpackAnyAs(Listener, resource.any);
    const managers: Any[] = [];
    if (listener.apiListener?.apiListener) managers.push(listener.apiListener.apiListener);
    for (const chain of listener.filterChains)
      for (const filter of chain.filters)
        if (filter.configType?.$case === 'typedConfig' && filter.configType.value.typeUrl.endsWith('.HttpConnectionManager'))
          managers.push(filter.configType.value);
    const routes = managers.flatMap((m) => {
      const spec = unpackAnyAs(HttpConnectionManager, m).routeSpecifier;
      return spec?.$case === 'rds' ? [spec.value.routeConfigName] : [];
    });
    const socket = listener.address?.address?.$case === 'socketAddress' ? listener.address.address.value : undefined;
    const bind = socket
      ? `${socket.protocol === SocketAddress_Protocol.UDP ? 'udp' : 'tcp'} ${socket.address}:${socket.portSpecifier?.value ?? ''}`
      : undefined;
    return { routes, endpoints: [], ...(bind !== undefined ? { bind } : {}) };
  }

  it('agrees with a full decode on every listener and cluster of generated meshes', () => {
    let compared = 0;
    fc.assert(
      fc.property(meshArbitrary, (mesh) => {
        const model = buildMeshModel(meshStateOf(mesh), DEFAULT_TRANSLATOR_SETTINGS);
        for (const service of model.services.keys()) {
          for (const kind of ['envoy', 'proxyless'] as const) {
            const set = buildProxyResources(model, { service, kind });
            for (const type of [TypeUrl.Listener, TypeUrl.Cluster])
              for (const resource of set.get(type)!.values()) {
                compared++;
                expect({ name: resource.name, refs: references(resource) }).toEqual({
                  name: resource.name,
                  refs: decodedReferences(resource),
                });
              }
          }
        }
      }),
      { numRuns: propertyRuns(100) },
    );
    expect(compared).toBeGreaterThan(200);
  });

  it('agrees with a full decode on arbitrary listeners: several chains and filters, API listeners, other filter types', () => {
    const manager = fc.oneof(
      fc.string().map((routeConfigName) =>
        packAny(
          HttpConnectionManager,
          HttpConnectionManager.fromPartial({
            statPrefix: 's',
            routeSpecifier: { $case: 'rds', value: { routeConfigName, configSource: { initialFetchTimeout: { seconds: '1' } } } },
          }),
        ),
      ),
      fc
        .string()
        .map((name) =>
          packAny(HttpConnectionManager, HttpConnectionManager.fromPartial({ routeSpecifier: { $case: 'routeConfig', value: { name } } })),
        ),
    );
    const filter = fc.oneof(
      manager,
      fc
        .string()
        .map((statPrefix) => packAny(TcpProxy, TcpProxy.fromPartial({ statPrefix, clusterSpecifier: { $case: 'cluster', value: 'c' } }))),
    );
    const socket = fc.record({
      protocol: fc.constantFrom(SocketAddress_Protocol.TCP, SocketAddress_Protocol.UDP),
      address: fc.string(),
      portSpecifier: fc.oneof(
        fc.nat({ max: 65535 }).map((value) => ({ $case: 'portValue' as const, value })),
        fc.string().map((value) => ({ $case: 'namedPort' as const, value })),
      ),
    });
    const listener = fc.record({
      name: fc.string(),
      address: fc.option(
        socket.map((value) => ({ address: { $case: 'socketAddress' as const, value } })),
        { nil: undefined },
      ),
      filterChains: fc.array(
        fc.record({
          name: fc.string(),
          filters: fc.array(
            fc.record({ name: fc.string(), configType: filter.map((value) => ({ $case: 'typedConfig' as const, value })) }),
            { maxLength: 3 },
          ),
        }),
        { maxLength: 3 },
      ),
      // An API listener holds a connection manager (the decode above reads it as one).
      apiListener: fc.option(
        manager.map((apiListener) => ({ apiListener })),
        { nil: undefined },
      ),
    });
    fc.assert(
      fc.property(listener, (fields) => {
        const resource = makeResource(TypeUrl.Listener, Listener, fields.name, Listener.fromPartial(fields));
        // In wire order (filter chains, then the API listener); the decode lists the API listener first.
        const sorted = ({ routes, ...rest }: References) => ({ ...rest, routes: [...routes].sort() });
        expect(sorted(references(resource))).toEqual(sorted(decodedReferences(resource)));
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('reads a UDP bind and a named port', () => {
    const listener = makeResource(
      TypeUrl.Listener,
      Listener,
      'u',
      Listener.fromPartial({
        name: 'u',
        address: {
          address: {
            $case: 'socketAddress',
            value: { protocol: SocketAddress_Protocol.UDP, address: '::', portSpecifier: { $case: 'namedPort', value: 'dns' } },
          },
        },
      }),
    );
    expect(references(listener)).toEqual(decodedReferences(listener));
    expect(references(listener).bind).toBe('udp :::dns');
  });
});
