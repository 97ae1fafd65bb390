// What proxyless clients receive, decoded and validated by grpc-js-xds itself
// (the code that would NACK it), for a mesh using every feature. Complements
// the end-to-end test, which exercises only the basic shapes.
import './grpc-xds-rbac.test-setup';
import { TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import { ClusterResourceType } from '@grpc/grpc-js-xds/build/src/xds-resource-type/cluster-resource-type';
import { EndpointResourceType } from '@grpc/grpc-js-xds/build/src/xds-resource-type/endpoint-resource-type';
import { ListenerResourceType } from '@grpc/grpc-js-xds/build/src/xds-resource-type/listener-resource-type';
import { RouteConfigurationResourceType } from '@grpc/grpc-js-xds/build/src/xds-resource-type/route-config-resource-type';
import type { XdsDecodeContext, XdsResourceType } from '@grpc/grpc-js-xds/build/src/xds-resource-type/xds-resource-type';
import { register } from '@grpc/grpc-js-xds';
import type { Listener__Output } from '@grpc/grpc-js-xds/build/src/generated/envoy/config/listener/v3/Listener';
import { decodeSingleResource, HTTP_CONNECTION_MANGER_TYPE_URL } from '@grpc/grpc-js-xds/build/src/resources';

import { MeshFixture } from '../model/mesh-fixture';
import { WORKLOAD_CERT_PROVIDER } from './names';
import { buildProxyResources } from './proxy-resources';
import { undeclaredTargetResource } from './refused-target';

const DECODERS: Partial<Record<XdsTypeUrl, XdsResourceType>> = {
  [TypeUrl.Listener]: ListenerResourceType.get(),
  [TypeUrl.RouteConfiguration]: RouteConfigurationResourceType.get(),
  [TypeUrl.Cluster]: ClusterResourceType.get(),
  [TypeUrl.ClusterLoadAssignment]: EndpointResourceType.get(),
};

// Only what the decoders read: the bootstrap's certificate provider (as proxylessBootstrap in @trellis/sdk-node names it), no LRS server.
const context = { server: {}, bootstrap: { certificateProviders: { [WORKLOAD_CERT_PROVIDER]: {} } } } as unknown as XdsDecodeContext;

beforeAll(() => {
  // Registers grpc-js-xds's HTTP filters and LB policies, which listener and cluster validation look up.
  register();
});

function featureMesh(): MeshFixture {
  return new MeshFixture()
    .key('k1')
    .service('payments', {
      protocol: 'grpc',
      port: 9000,
      policy: {
        timeoutMs: 750,
        retries: { attempts: 3, perTryTimeoutMs: 200, retryOn: ['unavailable', 'cancelled', '5xx', 'reset'] },
        circuitBreaker: { maxRequests: 64, maxConnections: 10 },
        outlierDetection: {},
        healthCheck: {},
        loadBalancing: 'least_request',
        rateLimit: { maxTokens: 10, tokensPerFill: 10, fillIntervalMs: 1000 },
      },
      trafficSplit: [
        { name: 'stable', labels: { track: 'stable' }, weight: 95 },
        { name: 'canary', labels: { track: 'canary' }, weight: 5 },
      ],
      ingress: { host: 'pay.example.com' },
      mtls: 'strict',
    })
    .service('search', { protocol: 'grpc', port: 9100, policy: { loadBalancing: 'ring_hash' }, mtls: 'permissive' })
    .service('ledger', { protocol: 'http2', port: 9200 })
    .service('db', { protocol: 'tcp', port: 5432 })
    .service('checkout', {
      protocol: 'grpc',
      port: 9300,
      mtls: 'strict',
      dependencies: [{ service: 'payments', policy: { timeoutMs: 300 } }, { service: 'search' }, { service: 'ledger' }, { service: 'db' }],
    })
    .instance('payments', 'p-1', '10.0.0.1', 9000, { labels: { track: 'stable' }, locality: { region: 'eu', zone: 'eu-1' } })
    .instance('payments', 'p-2', 'fd00::2', 9000, {
      labels: { track: 'canary' },
      locality: { region: 'eu', zone: 'eu-2', subZone: 'r1' },
      weight: 4,
    })
    .instance('search', 's-1', '10.0.1.1', 9100)
    .instance('ledger', 'l-1', '10.0.2.1', 9200);
}

describe('proxyless resources through grpc-js-xds validation', () => {
  it('are all accepted, with the expected routing', () => {
    const set = buildProxyResources(featureMesh().model(), { service: 'checkout', kind: 'proxyless' });
    const decoded = new Map<string, object>();
    for (const [typeUrl, byName] of set) {
      for (const resource of byName.values()) {
        const decoder = DECODERS[typeUrl];
        if (!decoder) throw new Error(`proxyless clients were sent ${typeUrl}`);
        const result = decoder.decode(context, { type_url: resource.any.typeUrl, value: resource.any.value });
        expect({ name: resource.name, error: result.error }).toEqual({ name: resource.name, error: undefined });
        expect(result.name).toBe(resource.name);
        decoded.set(`${typeUrl} ${resource.name}`, result.value!);
      }
    }
    expect([...set.get(TypeUrl.Listener)!.keys()]).toEqual([
      // db is a TCP dependency: its listener routes to a cluster that refuses every call, saying why.
      'db',
      'grpc/server?xds.resource.listening_address=0.0.0.0:9300',
      'ledger',
      'payments',
      'search',
    ]);
    // checkout's own server (strict): TLS, and RBAC, which grpc-js-xds accepted above.
    const server = JSON.stringify(decoded.get(`${TypeUrl.Listener} grpc/server?xds.resource.listening_address=0.0.0.0:9300`));
    expect(server).toContain('envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext');
    // Calls to payments (strict) and search (permissive) use mTLS naming the callee; ledger (off) stays plaintext.
    const tls = (cluster: string) => JSON.stringify(decoded.get(`${TypeUrl.Cluster} ${cluster}`));
    expect(tls('outbound|payments|stable~1')).toContain('spiffe://trellis.local/svc/payments');
    expect(tls('outbound|search~1')).toContain('spiffe://trellis.local/svc/search');
    expect(tls('outbound|ledger~1')).not.toContain('spiffe');
    // payments' outlier detection reaches grpc-js-xds as failure-percentage ejection, success-rate ejection off.
    const payments = decoded.get(`${TypeUrl.Cluster} outbound|payments|stable~1`) as { outlierDetectionUpdate?: Record<string, unknown> };
    expect(payments.outlierDetectionUpdate).toMatchObject({
      failure_percentage_ejection: { enforcement_percentage: 100, minimum_hosts: 2, request_volume: 5, threshold: 50 },
      success_rate_ejection: undefined,
    });
    expect([...set.get(TypeUrl.Cluster)!.keys()]).toEqual([
      'outbound|ledger~1',
      'outbound|payments|canary~1',
      'outbound|payments|stable~1',
      'outbound|search~1',
      'refused|db',
    ]);
    expect(decoded.get(`${TypeUrl.ClusterLoadAssignment} refused|db`)).toMatchObject({
      policy: {
        drop_overloads: [
          {
            category: 'trellis: db, a dependency of checkout, is a tcp service: gRPC calls cannot reach it through xds:///db',
            drop_percentage: { numerator: 100, denominator: 'HUNDRED' },
          },
        ],
      },
    });
    const routes = JSON.stringify(decoded.get(`${TypeUrl.RouteConfiguration} proxyless|payments`));
    expect(routes).toContain('outbound|payments|canary');
    expect(routes).toContain('"num_retries"');
  });

  it('accepts what a client dialing an undeclared target gets: a route to a cluster whose endpoints drop every call, naming the cause', () => {
    const decode = (typeUrl: XdsTypeUrl, name: string) => {
      const resource = undeclaredTargetResource(typeUrl, 'checkout', name)!;
      const result = DECODERS[typeUrl]!.decode(context, { type_url: resource.any.typeUrl, value: resource.any.value });
      expect({ name, error: result.error }).toEqual({ name, error: undefined });
      return result.value as Record<string, unknown>;
    };
    const listener = decode(TypeUrl.Listener, 'payments') as unknown as Listener__Output;
    const hcm = decodeSingleResource(HTTP_CONNECTION_MANGER_TYPE_URL, listener.api_listener!.api_listener!.value!);
    expect(JSON.stringify(hcm.route_config)).toContain('"cluster":"refused|payments"');
    expect(decode(TypeUrl.Cluster, 'refused|payments')).toMatchObject({ type: 'EDS', edsServiceName: 'refused|payments' });
    expect(decode(TypeUrl.ClusterLoadAssignment, 'refused|payments')).toMatchObject({
      policy: {
        drop_overloads: [
          {
            category: 'trellis: checkout has not declared a dependency on payments; declare it in the registry to call xds:///payments',
            drop_percentage: { numerator: 100, denominator: 'HUNDRED' },
          },
        ],
      },
    });
  });

  it('would reject what only sidecars get (the check is not a rubber stamp)', () => {
    const sidecar = buildProxyResources(featureMesh().model(), { service: 'checkout', kind: 'envoy' });
    const inbound = sidecar.get(TypeUrl.Listener)!.get('inbound|checkout')!;
    const result = ListenerResourceType.get().decode(context, { type_url: inbound.any.typeUrl, value: inbound.any.value });
    expect(result.error).toEqual(expect.any(String));
  });
});
