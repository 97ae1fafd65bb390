import { BinaryWriter } from '@bufbuild/protobuf/wire';
import fc from 'fast-check';
import { Cluster, Cluster_DiscoveryType } from './generated/envoy/config/cluster/v3/cluster';
import { ClusterLoadAssignment } from './generated/envoy/config/endpoint/v3/endpoint';
import { Listener } from './generated/envoy/config/listener/v3/listener';
import { RouteConfiguration } from './generated/envoy/config/route/v3/route';
import { HttpConnectionManager } from './generated/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import { Router } from './generated/envoy/extensions/filters/http/router/v3/router';
import { packAny, TypeUrl, typeUrlOf, unpackAny, unpackAnyAs } from './index';

describe('generated Envoy types', () => {
  it('round-trips a Listener whose HTTP connection manager is packed in Any', () => {
    const hcm = HttpConnectionManager.fromPartial({
      statPrefix: 'outbound_b',
      routeSpecifier: {
        $case: 'rds',
        value: { routeConfigName: 'b', configSource: { configSourceSpecifier: { $case: 'ads', value: {} }, resourceApiVersion: 2 } },
      },
      httpFilters: [
        { name: 'envoy.filters.http.router', configType: { $case: 'typedConfig', value: packAny(Router, Router.fromPartial({})) } },
      ],
    });
    const listener = Listener.fromPartial({
      name: 'outbound|b',
      address: {
        address: { $case: 'socketAddress', value: { address: '127.0.0.1', portSpecifier: { $case: 'portValue', value: 15001 } } },
      },
      filterChains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              configType: { $case: 'typedConfig', value: packAny(HttpConnectionManager, hcm) },
            },
          ],
        },
      ],
    });
    const decoded = Listener.decode(Listener.encode(listener).finish());
    expect(decoded.name).toBe('outbound|b');
    const filter = decoded.filterChains[0]!.filters[0]!;
    expect(filter.configType?.$case).toBe('typedConfig');
    const any = filter.configType!.value as ReturnType<typeof packAny>;
    expect(any.typeUrl).toBe('type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager');
    const unpacked = unpackAnyAs(HttpConnectionManager, any);
    expect(unpacked.statPrefix).toBe('outbound_b');
    expect(unpacked.routeSpecifier).toEqual({ $case: 'rds', value: expect.objectContaining({ routeConfigName: 'b' }) });
  });

  it('round-trips Cluster, ClusterLoadAssignment and RouteConfiguration', () => {
    const cluster = Cluster.fromPartial({
      name: 'b',
      clusterDiscoveryType: { $case: 'type', value: Cluster_DiscoveryType.EDS },
      edsClusterConfig: { edsConfig: { configSourceSpecifier: { $case: 'ads', value: {} }, resourceApiVersion: 2 } },
      connectTimeout: { seconds: '1', nanos: 0 },
    });
    expect(Cluster.decode(Cluster.encode(cluster).finish())).toEqual(cluster);

    const cla = ClusterLoadAssignment.fromPartial({
      clusterName: 'b',
      endpoints: [
        {
          locality: { zone: 'z1' },
          loadBalancingWeight: 1,
          lbEndpoints: [
            {
              hostIdentifier: {
                $case: 'endpoint',
                value: {
                  address: {
                    address: { $case: 'socketAddress', value: { address: '10.0.0.1', portSpecifier: { $case: 'portValue', value: 8080 } } },
                  },
                },
              },
            },
          ],
        },
      ],
    });
    expect(ClusterLoadAssignment.decode(ClusterLoadAssignment.encode(cla).finish())).toEqual(cla);

    const routes = RouteConfiguration.fromPartial({
      name: 'b',
      virtualHosts: [
        {
          name: 'b',
          domains: ['b'],
          routes: [
            {
              match: { pathSpecifier: { $case: 'prefix', value: '/' } },
              action: { $case: 'route', value: { clusterSpecifier: { $case: 'cluster', value: 'b' } } },
            },
          ],
        },
      ],
    });
    expect(RouteConfiguration.decode(RouteConfiguration.encode(routes).finish())).toEqual(routes);
  });

  it('packs Any with the type URLs Envoy expects and unpacks through the registry', () => {
    expect(typeUrlOf(Listener)).toBe(TypeUrl.Listener);
    expect(typeUrlOf(Cluster)).toBe(TypeUrl.Cluster);
    expect(typeUrlOf(ClusterLoadAssignment)).toBe(TypeUrl.ClusterLoadAssignment);
    expect(typeUrlOf(RouteConfiguration)).toBe(TypeUrl.RouteConfiguration);
    const any = packAny(Cluster, Cluster.fromPartial({ name: 'c' }));
    const { typeName, message } = unpackAny(any);
    expect(typeName).toBe('envoy.config.cluster.v3.Cluster');
    expect((message as Cluster).name).toBe('c');
    expect(() => unpackAnyAs(Listener, any)).toThrow(/expected type.googleapis.com\/envoy.config.listener.v3.Listener/);
    expect(() => unpackAny({ typeUrl: 'type.googleapis.com/no.such.Type', value: Buffer.alloc(0) })).toThrow(/no generated type/);
  });

  it('packs the same bytes as a fresh encode, whatever was packed before (one writer is reused)', () => {
    // Sizes from a few bytes to several kilobytes: the reused writer grows and is then reused for smaller messages.
    const cluster = (name: string, repeat: number) =>
      Cluster.fromPartial({ name: name.repeat(repeat + 1), edsClusterConfig: { serviceName: `${name}-eds`.repeat(repeat + 1) } });
    const fresh = (m: Cluster) => Buffer.from(Cluster.encode(m).finish());
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.string({ maxLength: 20 }), fc.nat({ max: 300 }), fc.boolean()), { maxLength: 12 }), (packs) => {
        for (const [name, repeat, throwFirst] of packs) {
          // A pack that throws half-way must not leave its bytes in the next one.
          if (throwFirst) expect(() => packAny(halfWritten, {} as never)).toThrow('half written');
          const m = cluster(name, repeat);
          expect(packAny(Cluster, m).value).toEqual(fresh(m));
        }
      }),
      { numRuns: Number(process.env.TRELLIS_PROPERTY_RUNS ?? 100) },
    );
  });
});

/** A message type whose encoder fails after writing part of a message. */
const halfWritten = {
  $type: 'test.HalfWritten',
  encode(_message: unknown, writer: BinaryWriter = new BinaryWriter()): BinaryWriter {
    writer.uint32(10).fork().string('partial');
    throw new Error('half written');
  },
  decode: () => ({}),
  fromJSON: () => ({}),
  toJSON: () => ({}),
  fromPartial: () => ({}),
} as unknown as Parameters<typeof packAny>[0];
