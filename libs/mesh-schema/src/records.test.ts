import { generateKeyPairSync } from 'node:crypto';
import {
  AuthzPublicKey,
  InstanceId,
  InstanceRecord,
  isUrlHostName,
  MeshSettings,
  ProxyStatus,
  RetryOn,
  ServiceName,
  ServiceSpec,
  TrafficSplit,
  type ServiceSpecInput,
} from './records';
import { XDS_TOKEN_AUDIENCE } from '@trellis/mesh-contracts';

/** The modulus of a real RSA-2048 key: AuthzPublicKey refuses anything weaker. */
const TEST_RSA_N = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' }).n!;

const spec = (overrides: Partial<ServiceSpecInput> = {}): ServiceSpecInput => ({
  name: 'checkout',
  team: 'payments',
  protocol: 'http',
  port: 8080,
  ...overrides,
});
const issues = (result: { success: boolean; error?: { issues: { path: PropertyKey[]; message: string }[] } }) =>
  (result.error?.issues ?? []).map((i) => `${i.path.join('.')}: ${i.message}`);

describe('ServiceName', () => {
  it.each(['a', 'checkout', 'a-b-1', '0abc', 'a'.repeat(63)])('accepts %j', (name) => {
    expect(ServiceName.safeParse(name).success).toBe(true);
  });
  it.each(['', 'A', 'Checkout', '-a', 'a-', 'a_b', 'a.b', 'a/b', '..', '.', 'a'.repeat(64), 'café', 'a\u0000b', 'a\nb', ' a'])(
    'refuses %j',
    (name) => {
      expect(ServiceName.safeParse(name).success).toBe(false);
    },
  );
  it('refuses the xDS token audience, saying it is reserved', () => {
    expect(issues(ServiceName.safeParse(XDS_TOKEN_AUDIENCE))).toEqual([
      expect.stringMatching(/^: is reserved for Trellis itself \(trellis-xds\)/),
    ]);
  });
});

describe('InstanceId', () => {
  it.each(['pod-7d9f-abc12', 'vm01.eu-west.example', 'A_b-1', '550e8400-e29b-41d4-a716-446655440000'])('accepts %j', (id) => {
    expect(InstanceId.safeParse(id).success).toBe(true);
  });
  it.each(['', 'a/b', '..', 'a..b', '.a', 'a.', 'ünïcode', 'tab\there', 'x'.repeat(129)])('refuses %j', (id) => {
    expect(InstanceId.safeParse(id).success).toBe(false);
  });
});

describe('ServiceSpec', () => {
  it('fills defaults', () => {
    expect(ServiceSpec.parse(spec())).toEqual({ ...spec(), description: '', dependencies: [], policy: {} });
  });

  it('refuses the reserved name as its name and as a dependency, naming the field', () => {
    expect(issues(ServiceSpec.safeParse(spec({ name: 'trellis-xds' })))).toEqual([expect.stringMatching(/^name: is reserved/)]);
    expect(issues(ServiceSpec.safeParse(spec({ dependencies: [{ service: 'trellis-xds' }] })))).toEqual([
      expect.stringMatching(/^dependencies.0.service: is reserved/),
    ]);
    // Teams and subsets are other namespaces: the name is fine there.
    expect(ServiceSpec.safeParse(spec({ team: 'trellis-xds' })).success).toBe(true);
  });

  it('refuses a dependency on itself and duplicate dependencies, naming the field', () => {
    const result = ServiceSpec.safeParse(spec({ dependencies: [{ service: 'checkout' }, { service: 'cart' }, { service: 'cart' }] }));
    expect(issues(result)).toEqual([
      'dependencies.0.service: a service cannot depend on itself',
      'dependencies.2.service: duplicate dependency "cart"',
    ]);
  });

  it('refuses unknown fields at every level', () => {
    expect(ServiceSpec.safeParse({ ...spec(), owner: 'x' }).success).toBe(false);
    expect(ServiceSpec.safeParse(spec({ policy: { timeoutMs: 100, extra: 1 } as never })).success).toBe(false);
    expect(ServiceSpec.safeParse(spec({ dependencies: [{ service: 'cart', weight: 1 } as never] })).success).toBe(false);
  });

  it.each([0, 65536, 1.5, -1])('refuses port %j', (port) => {
    expect(issues(ServiceSpec.safeParse(spec({ port })))[0]).toMatch(/^port: /);
  });

  it('refuses a description over 1 KiB and control characters in health check paths', () => {
    expect(ServiceSpec.safeParse(spec({ description: 'x'.repeat(1025) })).success).toBe(false);
    expect(ServiceSpec.safeParse(spec({ policy: { healthCheck: { path: '/health\n' } } })).success).toBe(false);
    expect(ServiceSpec.safeParse(spec({ policy: { healthCheck: { path: '/healthz' } } })).success).toBe(true);
  });

  it('accepts every Envoy retry condition it lists, reset-before-request included, once each, and refuses others', () => {
    const retries = (retryOn: string[]) => spec({ policy: { retries: { attempts: 2, retryOn: retryOn as never } } });
    expect(ServiceSpec.parse(retries(['reset-before-request', 'connect-failure'])).policy.retries?.retryOn).toEqual([
      'reset-before-request',
      'connect-failure',
    ]);
    expect(ServiceSpec.safeParse(retries([...RetryOn.options])).success).toBe(true);
    expect(issues(ServiceSpec.safeParse(retries(['reset-before-connect'])))).toEqual([
      expect.stringMatching(/^policy\.retries\.retryOn\.0: /),
    ]);
  });

  it('checks ingress hosts and Access audiences', () => {
    expect(ServiceSpec.safeParse(spec({ ingress: { host: 'shop.example.com' } })).success).toBe(true);
    expect(ServiceSpec.safeParse(spec({ ingress: { host: 'Shop.example.com' } })).success).toBe(false);
    expect(ServiceSpec.safeParse(spec({ ingress: { host: 'shop.example.com', pathPrefix: 'no-slash' } })).success).toBe(false);
    expect(
      ServiceSpec.safeParse(
        spec({ ingress: { host: 'a.example.com', cloudflareAccess: { teamDomain: 'team.cloudflareaccess.com', audience: 'not hex' } } }),
      ).success,
    ).toBe(false);
  });
});

describe('TrafficSplit', () => {
  const subset = (name: string, weight: number) => ({ name, labels: { version: name }, weight });
  it('accepts weights that add up to 100', () => {
    expect(TrafficSplit.safeParse([subset('v1', 90), subset('v2', 10)]).success).toBe(true);
    expect(TrafficSplit.safeParse([subset('v1', 100), subset('v2', 0)]).success).toBe(true);
  });
  it('refuses weights that do not, saying what they add up to', () => {
    expect(issues(TrafficSplit.safeParse([subset('v1', 50), subset('v2', 40)]))).toEqual([
      ': subset weights must add up to 100 (they add up to 90)',
    ]);
  });
  it('refuses duplicate subsets, out-of-range weights and an empty split', () => {
    expect(issues(TrafficSplit.safeParse([subset('v1', 50), subset('v1', 50)]))).toEqual(['1.name: duplicate subset "v1"']);
    expect(TrafficSplit.safeParse([subset('v1', 101)]).success).toBe(false);
    expect(TrafficSplit.safeParse([subset('v1', -1), subset('v2', 101)]).success).toBe(false);
    expect(TrafficSplit.safeParse([]).success).toBe(false);
  });
});

describe('InstanceRecord', () => {
  const instance = { service: 'cart', id: 'vm-1', address: '10.1.2.3', port: 80, platform: 'vm', registeredAt: '2026-01-01T00:00:00Z' };
  it('accepts IPv4 and IPv6 literals only', () => {
    expect(InstanceRecord.safeParse(instance).success).toBe(true);
    expect(InstanceRecord.safeParse({ ...instance, address: 'fd00::1' }).success).toBe(true);
    expect(InstanceRecord.safeParse({ ...instance, address: 'cart.internal' }).success).toBe(false);
    expect(InstanceRecord.safeParse({ ...instance, address: '10.1.2.300' }).success).toBe(false);
  });
  it('limits labels and weights', () => {
    const labels = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']));
    expect(InstanceRecord.safeParse({ ...instance, labels }).success).toBe(false);
    expect(InstanceRecord.safeParse({ ...instance, labels: { 'app.kubernetes.io/version': 'v1.2' } }).success).toBe(true);
    expect(InstanceRecord.safeParse({ ...instance, labels: { k: 'has space' } }).success).toBe(false);
    expect(InstanceRecord.safeParse({ ...instance, weight: 0 }).success).toBe(false);
    expect(InstanceRecord.safeParse({ ...instance, weight: 129 }).success).toBe(false);
  });
});

describe('other records', () => {
  it('MeshSettings requires an issuer and bounds the clock skew', () => {
    expect(MeshSettings.parse({ tokenIssuer: 'trellis' })).toEqual({ tokenIssuer: 'trellis', clockSkewSeconds: 30 });
    expect(MeshSettings.safeParse({ tokenIssuer: '' }).success).toBe(false);
    expect(MeshSettings.safeParse({ tokenIssuer: 't', clockSkewSeconds: 301 }).success).toBe(false);
  });

  it('AuthzPublicKey refuses a kid that could leave its key segment', () => {
    const key = {
      kid: 'k1',
      jwk: { kty: 'RSA', kid: 'k1', alg: 'RS256', n: TEST_RSA_N, e: 'AQAB' },
      publishedAt: '2026-01-01T00:00:00Z',
      activeFrom: '2026-01-01T00:00:00Z',
    };
    expect(AuthzPublicKey.safeParse(key).success).toBe(true);
    expect(AuthzPublicKey.safeParse({ ...key, kid: '../x' }).success).toBe(false);
    expect(AuthzPublicKey.safeParse({ ...key, jwk: { ...key.jwk, d: 'private!' } }).success).toBe(false);
  });

  it('AuthzPublicKey refuses weak keys: RSA e = 1 or 3, a short modulus, a curve other than P-256/P-384', () => {
    const key = (jwk: object) => ({
      kid: 'k1',
      jwk: { kid: 'k1', ...jwk },
      publishedAt: '2026-01-01T00:00:00Z',
      activeFrom: '2026-01-01T00:00:00Z',
    });
    const issues = (jwk: object) =>
      AuthzPublicKey.safeParse(key(jwk))
        .error?.issues.map((i) => i.message)
        .join('; ');
    expect(issues({ kty: 'RSA', alg: 'RS256', n: TEST_RSA_N, e: 'AQ' })).toMatch(/exponent 1;/);
    expect(issues({ kty: 'RSA', alg: 'RS256', n: TEST_RSA_N, e: 'Aw' })).toMatch(/exponent 3;/);
    const short = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
    expect(issues({ kty: 'RSA', alg: 'RS256', n: short.n, e: short.e })).toMatch(/1024 bits/);
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey.export({ format: 'jwk' });
    expect(issues({ kty: 'EC', alg: 'ES256', crv: k1.crv, x: k1.x, y: k1.y })).toBeDefined();
    const p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ format: 'jwk' });
    expect(issues({ kty: 'EC', alg: 'ES256', crv: p256.crv, x: p256.x, y: p256.y })).toBeUndefined();
  });

  it('ProxyStatus holds only the xDS types a proxy asked for', () => {
    const status = {
      service: 'cart',
      nodeId: 'n1',
      controlPlane: 'cp-0',
      connectedAt: '2026-01-01T00:00:00Z',
      updatedAt: '2026-01-01T00:00:00Z',
    };
    expect(ProxyStatus.safeParse({ ...status, types: {} }).success).toBe(true);
    expect(ProxyStatus.safeParse({ ...status, types: { cds: { lastAckedVersion: '1' } } }).success).toBe(true);
    expect(ProxyStatus.safeParse({ ...status, types: { xyz: {} } }).success).toBe(false);
  });
});

describe('host names consumers put in URLs', () => {
  const ingress = (host: string, teamDomain = 'acme.cloudflareaccess.com') =>
    ServiceSpec.safeParse(spec({ ingress: { host, cloudflareAccess: { teamDomain, audience: 'ab'.repeat(16) } } }));

  it.each(['m.3', 'a.0x1f', '0.xn--0', 'xn--0.example', 'cloudflareaccess', '1.2.3.4', 'a.b-', 'x.-y', 'A.example.com', 'a..b', 'a.b.'])(
    'refuses the team domain %j (new URL cannot take it, or it is not a name)',
    (teamDomain) => {
      expect(issues(ingress('shop.example.com', teamDomain))).toEqual([
        expect.stringMatching(/^ingress\.cloudflareAccess\.teamDomain: must be a DNS name of two or more labels/),
      ]);
      expect(isUrlHostName(teamDomain)).toBe(false);
    },
  );

  it('refuses the same for an ingress host', () => {
    expect(issues(ingress('shop.3'))).toEqual([expect.stringMatching(/^ingress\.host: must be a DNS name/)]);
  });

  it.each(['acme.cloudflareaccess.com', 'a-b.x9', 'xn--bcher-kva.example'])('accepts %j, and new URL keeps it as it is', (name) => {
    expect(ingress(name, name).success).toBe(true);
    expect(new URL(`https://${name}/cdn-cgi/access/certs`).hostname).toBe(name);
  });
});
