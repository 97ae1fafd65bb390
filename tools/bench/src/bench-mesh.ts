// The mesh both xDS benchmarks build (xds-fanout.ts registers it in etcd for the control plane and the
// floor, xds-change-path.ts holds it in one process): `hub` and S services svc-0 … svc-(S-1), every
// n-th calling hub and each other one its neighbour; proxy p runs as an instance of svc-(p mod S); a
// change is a new circuit-breaker limit on hub, which reaches exactly the proxies of hub's callers.
import type { ServiceSpecInput } from '@trellis/mesh-schema';

export class BenchMesh {
  constructor(
    /** S, not counting hub. */
    readonly services: number,
    /** Every n-th service calls hub. */
    readonly hubEvery: number,
  ) {}

  /** Service i: it calls hub when i is a multiple of hubEvery, its neighbour otherwise. */
  serviceSpec(i: number): ServiceSpecInput {
    const name = serviceName(i);
    const dependency = this.callsHub(name) ? 'hub' : serviceName((i + 1) % this.services);
    return { name, team: 'core', protocol: 'http', port: 8080, dependencies: [{ service: dependency }] };
  }

  callsHub(service: string): boolean {
    return Number(service.slice(4)) % this.hubEvery === 0;
  }

  /** The service proxy p runs as. */
  proxyService(p: number): string {
    return serviceName(p % this.services);
  }

  /** How many of `proxies` proxies a change of hub reaches. */
  affectedProxies(proxies: number): number {
    let affected = 0;
    for (let p = 0; p < proxies; p++) if (this.callsHub(this.proxyService(p))) affected++;
    return affected;
  }
}

export const serviceName = (i: number): string => `svc-${i}`;

/** hub, with the circuit-breaker limit each change sets anew. */
export const hubSpec = (maxConnections: number): ServiceSpecInput => ({
  name: 'hub',
  team: 'core',
  protocol: 'http',
  port: 8080,
  policy: { circuitBreaker: { maxConnections } },
});

/**
 * The name of an encoded Listener, Cluster, RouteConfiguration or ClusterLoadAssignment: field 1 of each.
 * Read from the bytes, so a simulated Envoy decodes nothing (its cost would count against both servers alike).
 */
export function resourceName(bytes: Uint8Array): string {
  if (bytes[0] !== 0x0a) return '';
  let length = 0;
  let shift = 0;
  let i = 1;
  for (; i < bytes.length; i++) {
    length |= (bytes[i]! & 0x7f) << shift;
    shift += 7;
    if ((bytes[i]! & 0x80) === 0) break;
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset + i + 1, length).toString('utf8');
}
