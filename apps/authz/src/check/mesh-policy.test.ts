import type { ServiceRecord, ServiceSpecInput } from '@trellis/mesh-schema';
import { ServiceSpec } from '@trellis/mesh-schema';
import { MeshPolicy, type MeshView } from './mesh-policy';

const record = (spec: ServiceSpecInput): { value: ServiceRecord } => {
  const at = new Date(0).toISOString();
  return { value: { spec: ServiceSpec.parse(spec), generation: 1, created: { actor: 't', at }, updated: { actor: 't', at } } };
};

function view(specs: ServiceSpecInput[]): MeshView & { services: Map<string, { value: ServiceRecord }> } {
  const services = new Map(specs.map((spec) => [spec.name, record(spec)]));
  return { ready: true, services, state: { services, authzKeys: new Map() } };
}

const base = { team: 'shop', protocol: 'http' as const, port: 8080 };

describe('MeshPolicy', () => {
  it('allows only declared dependencies between registered services', () => {
    const mesh = view([
      { ...base, name: 'checkout', dependencies: [{ service: 'orders' }] },
      { ...base, name: 'orders' },
      { ...base, name: 'payments' },
    ]);
    const policy = new MeshPolicy(mesh);
    expect(policy.allowsCall('checkout', 'orders')).toEqual({ allowed: true });
    expect(policy.allowsCall('checkout', 'payments')).toEqual({ allowed: false, reason: 'undeclared' });
    expect(policy.allowsCall('orders', 'checkout')).toEqual({ allowed: false, reason: 'undeclared' });
    expect(policy.allowsCall('ghost', 'orders')).toEqual({ allowed: false, reason: 'unknown-source' });
    mesh.services.delete('orders');
    expect(policy.allowsCall('checkout', 'orders')).toEqual({ allowed: false, reason: 'unknown-destination' });
  });

  it('sees a changed record at once (a new record object)', () => {
    const mesh = view([
      { ...base, name: 'checkout' },
      { ...base, name: 'orders' },
    ]);
    const policy = new MeshPolicy(mesh);
    expect(policy.allowsCall('checkout', 'orders').allowed).toBe(false);
    mesh.services.set('checkout', record({ ...base, name: 'checkout', dependencies: [{ service: 'orders' }] }));
    expect(policy.allowsCall('checkout', 'orders').allowed).toBe(true);
  });

  it("names a service's ingress and the Access team domains", () => {
    const access = { teamDomain: 'acme.cloudflareaccess.com', audience: 'a'.repeat(32) };
    const policy = new MeshPolicy(
      view([
        { ...base, name: 'web', ingress: { host: 'shop.example.com' } },
        { ...base, name: 'api', ingress: { host: 'shop.example.com', pathPrefix: '/api', cloudflareAccess: access } },
        { ...base, name: 'orders' },
      ]),
    );
    expect(policy.accessTeamDomains()).toEqual(['acme.cloudflareaccess.com']);
    expect(policy.ingressOf('web')?.ingress.host).toBe('shop.example.com');
    expect(policy.ingressOf('api')?.ingress.cloudflareAccess).toEqual(access);
    expect(policy.ingressOf('orders')).toBeUndefined();
  });
});
