// Table test over a mesh that uses every feature: each resource emitted for
// each identity decodes with the generated types and meets Envoy's own
// validate.rules constraints (read from the protos by ProtoValidator).
import { TypeUrl, unpackAny } from '@trellis/envoy-types';
import { ProtoValidator } from '@trellis/envoy-types/validation';
import { DEFAULT_TRANSLATOR_SETTINGS } from '../model';
import { MeshFixture } from '../model/mesh-fixture';
import { buildProxyResources } from './proxy-resources';
import { snapshotInconsistencies, type ProxyKind } from '../resource';

let validator: ProtoValidator;
beforeAll(() => {
  validator = ProtoValidator.load();
});

function richMesh(): MeshFixture {
  return new MeshFixture()
    .key('k1')
    .key('k2')
    .service('orders', {
      protocol: 'http',
      port: 8080,
      ingress: {
        host: 'shop.example.com',
        pathPrefix: '/orders',
        cloudflareAccess: { teamDomain: 'team.cloudflareaccess.com', audience: 'abcdef0123456789' },
      },
      policy: {
        timeoutMs: 1500,
        retries: { attempts: 2, perTryTimeoutMs: 500, retryOn: ['5xx', 'connect-failure'] },
        circuitBreaker: { maxConnections: 100, maxPendingRequests: 10, maxRequests: 200, maxRetries: 3 },
        outlierDetection: {},
        healthCheck: { path: '/healthz' },
        loadBalancing: 'least_request',
        rateLimit: { maxTokens: 100, tokensPerFill: 10, fillIntervalMs: 1000 },
      },
      dependencies: [
        { service: 'payments', policy: { timeoutMs: 300, rateLimit: { maxTokens: 5, tokensPerFill: 5, fillIntervalMs: 1000 } } },
        { service: 'inventory' },
        { service: 'db' },
        { service: 'cache' },
      ],
      // A public service in strict mode: the edge must present a mesh certificate.
      mtls: 'strict',
    })
    .service('payments', {
      protocol: 'grpc',
      port: 9000,
      policy: {
        healthCheck: {},
        loadBalancing: 'ring_hash',
        retries: { attempts: 3, retryOn: ['unavailable', 'reset'] },
        circuitBreaker: { maxRequests: 50 },
      },
      trafficSplit: [
        { name: 'stable', labels: { track: 'stable' }, weight: 90 },
        { name: 'canary', labels: { track: 'canary' }, weight: 10 },
      ],
      mtls: 'strict',
    })
    .service('inventory', {
      protocol: 'http2',
      port: 9100,
      policy: { loadBalancing: 'random', healthCheck: { path: '/ready' } },
      mtls: 'permissive',
    })
    .service('db', { protocol: 'tcp', port: 5432, policy: { healthCheck: {} }, mtls: 'strict' })
    .service('cache', { protocol: 'tcp', port: 6379, mtls: 'permissive' })
    .service('frontend', { protocol: 'http', port: 3000, dependencies: [{ service: 'orders' }] })
    .instance('payments', 'payments-1', '10.0.1.1', 9000, {
      labels: { track: 'stable' },
      locality: { region: 'eu', zone: 'eu-1', subZone: 'rack-1' },
    })
    .instance('payments', 'payments-2', '10.0.1.2', 9000, {
      labels: { track: 'canary' },
      locality: { region: 'eu', zone: 'eu-2' },
      weight: 5,
    })
    .instance('inventory', 'inventory-1', 'fd00::1', 9100, { platform: 'k8s' })
    .instance('orders', 'orders-1', '10.0.2.1', 8080)
    .instance('db', 'db-1', '10.0.3.1', 5432)
    .instance('cache', 'cache-1', '10.0.3.2', 6379);
}

const model = richMesh().model();
const cases: Array<[string, ProxyKind]> = [...model.services.keys()].flatMap((s) => [
  [s, 'envoy'],
  [s, 'proxyless'],
]);

describe.each(cases)('resources for %s (%s)', (service, kind) => {
  const set = buildProxyResources(model, { service, kind });
  const resources = [...set.values()].flatMap((byName) => [...byName.values()]);

  it('decode with the generated types and meet every validate.rules constraint', () => {
    for (const resource of resources) {
      const { typeName } = unpackAny(resource.any);
      expect(resource.any.typeUrl).toBe(resource.typeUrl);
      expect(`type.googleapis.com/${typeName}`).toBe(resource.typeUrl);
      expect({ resource: resource.name, violations: validator.validateAny(resource.any) }).toEqual({
        resource: resource.name,
        violations: [],
      });
    }
  });

  it('pass the check every snapshot passes before it is published (RDS and EDS names present, no address bound twice)', () => {
    expect(snapshotInconsistencies(set)).toEqual([]);
  });

  it('route only to clusters that exist in the same set (or the bootstrap)', () => {
    const clusters = new Set([...set.get(TypeUrl.Cluster)!.keys(), 'local-app']);
    const loads = new Set(set.get(TypeUrl.ClusterLoadAssignment)!.keys());
    const text = resources.map((r) => JSON.stringify(unpackAny(r.any).message)).join('\n');
    for (const [, clusterName] of text.matchAll(/"(?:cluster|clusterName|name)":"(outbound\|[^"]+|local-app|trellis-authz)"/g)) {
      const known = [clusters, loads, set.get(TypeUrl.Listener)!, set.get(TypeUrl.RouteConfiguration)!];
      expect({ clusterName, known: known.some((names) => names.has(clusterName!)) }).toEqual({ clusterName, known: true });
    }
  });
});

describe('with an OTLP collector for spans', () => {
  const settings = {
    ...DEFAULT_TRANSLATOR_SETTINGS,
    tracing: { collector: { host: 'otel-collector.observability', port: 4317 }, samplingPercent: 2.5 },
  };
  const mesh = richMesh().model(settings);

  it.each(['orders', 'frontend', 'payments'])("%s's sidecar resources meet every validate.rules constraint", (service) => {
    const set = buildProxyResources(mesh, { service, kind: 'envoy' });
    expect(set.get(TypeUrl.Cluster)!.has('trellis-otel-collector')).toBe(true);
    for (const resource of [...set.values()].flatMap((byName) => [...byName.values()])) {
      expect({ resource: resource.name, violations: validator.validateAny(resource.any) }).toEqual({
        resource: resource.name,
        violations: [],
      });
    }
    expect(snapshotInconsistencies(set)).toEqual([]);
  });
});

describe('scoping', () => {
  it('gives a proxy nothing for services it did not declare, and config size follows the dependency list', () => {
    const mesh = richMesh();
    const small = buildProxyResources(mesh.model(), { service: 'frontend', kind: 'envoy' });
    for (let i = 0; i < 300; i++) {
      mesh.service(`extra-${i}`, { protocol: 'http', port: 7000, dependencies: i > 0 ? [{ service: `extra-${i - 1}` }] : [] });
      mesh.instance(`extra-${i}`, `extra-${i}-1`, `10.9.${Math.floor(i / 250)}.${(i % 250) + 1}`, 7000);
    }
    const big = buildProxyResources(mesh.model(), { service: 'frontend', kind: 'envoy' });
    const hashes = (set: typeof small) => [...set.values()].flatMap((m) => [...m.values()].map((r) => `${r.name}:${r.hash}`));
    expect(hashes(big)).toEqual(hashes(small));
    const clusters = [...big.get(TypeUrl.Cluster)!.keys()];
    expect(clusters).toEqual(['outbound|orders', 'trellis-authz']);
  });
});
