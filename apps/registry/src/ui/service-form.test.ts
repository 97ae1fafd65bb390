import type { ServiceSpec } from '@trellis/mesh-schema';
import { emptyForm, formFieldOf, formToSpec, readForm, specToForm } from './service-form';
import type { FormValues } from './service-form';

const form = (overrides: Partial<FormValues>): FormValues => ({ ...emptyForm(), name: 'shop', team: 'web', port: '8080', ...overrides });

describe('formToSpec', () => {
  it('builds a spec from the fields an engineer fills', () => {
    const result = formToSpec(
      form({
        dependencies: 'catalog, basket\n\nsearch',
        timeoutMs: '1500',
        retries: '2',
        ingressHost: 'shop.example.com',
        accessTeamDomain: 'acme.cloudflareaccess.com',
        accessAudience: 'ab'.repeat(16),
      }),
    );
    expect(result).toEqual({
      ok: true,
      spec: {
        name: 'shop',
        team: 'web',
        description: '',
        protocol: 'http',
        port: 8080,
        dependencies: [{ service: 'catalog' }, { service: 'basket' }, { service: 'search' }],
        policy: { timeoutMs: 1500, retries: { attempts: 2, retryOn: ['connect-failure', 'refused-stream', 'unavailable'] } },
        ingress: {
          host: 'shop.example.com',
          pathPrefix: '/',
          cloudflareAccess: { teamDomain: 'acme.cloudflareaccess.com', audience: 'ab'.repeat(16) },
        },
      },
    });
  });

  it('puts each error next to the field it belongs to', () => {
    const result = formToSpec(form({ name: 'Shop!', port: 'eighty', dependencies: 'shop', timeoutMs: '0', ingressHost: 'not a host' }));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.port).toEqual(['must be a whole number']);
    expect(result.errors.name?.[0]).toContain('DNS label');
    expect(result.errors.timeoutMs).toHaveLength(1);
    expect(result.errors.ingressHost).toEqual([expect.stringContaining('must be a DNS name')]);
    // "shop" depends on "Shop!"'s cleaned-up name only when the name is valid; here the dependency itself is fine.
    expect(result.errors.dependencies).toBeUndefined();
  });

  it('refuses a self-dependency on the dependencies field and Access settings without a host', () => {
    const result = formToSpec(form({ dependencies: 'shop', accessAudience: 'abcdefabcdefabcdef' }));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.dependencies).toEqual(['a service cannot depend on itself']);
    expect(result.errors.ingressHost).toEqual(['a public host is required when Cloudflare Access is set']);
  });

  it('keeps settings the form does not show when editing', () => {
    const existing: ServiceSpec = {
      name: 'shop',
      team: 'web',
      description: 'd',
      protocol: 'grpc',
      port: 9000,
      dependencies: [{ service: 'catalog', policy: { timeoutMs: 200 } }, { service: 'gone' }],
      policy: { timeoutMs: 1000, retries: { attempts: 1, retryOn: ['5xx'] }, circuitBreaker: { maxConnections: 10 } },
      trafficSplit: [{ name: 'stable', labels: { version: 'v1' }, weight: 100 }],
      mtls: 'strict',
      workloadIdentity: { kubernetes: [{ namespace: 'shop', serviceAccount: 'shop' }] },
    };
    const result = formToSpec({ ...specToForm(existing), dependencies: 'catalog\nbasket', retries: '3' }, existing);
    expect(result.ok && result.spec).toEqual({
      ...existing,
      dependencies: [{ service: 'catalog', policy: { timeoutMs: 200 } }, { service: 'basket' }],
      policy: { timeoutMs: 1000, retries: { attempts: 3, retryOn: ['5xx'] }, circuitBreaker: { maxConnections: 10 } },
    });
  });

  it('sets the mTLS mode, and leaves it unset when an untouched form is saved', () => {
    const strict = formToSpec(form({ mtls: 'strict' }));
    expect(strict.ok && strict.spec.mtls).toBe('strict');
    const untouched = formToSpec(form({}));
    expect(untouched.ok && 'mtls' in untouched.spec).toBe(false);
    // Stepping back down is a choice the form keeps.
    const existing = { ...(strict.ok ? strict.spec : ({} as ServiceSpec)) };
    const back = formToSpec({ ...specToForm(existing), mtls: 'off' }, existing);
    expect(back.ok && back.spec.mtls).toBe('off');
    const bogus = formToSpec(form({ mtls: 'sometimes' }));
    expect(!bogus.ok && bogus.errors.mtls).toHaveLength(1);
  });

  it('round-trips a spec through the form', () => {
    const result = formToSpec(form({ description: 'x', protocol: 'tcp', retries: '' }));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(formToSpec(specToForm(result.spec), result.spec)).toEqual(result);
  });
});

describe('readForm', () => {
  it('reads only known string fields', () => {
    const values = readForm({ name: 'a', port: ['1', '2'], evil: 'x', __proto__: { team: 'hacked' } });
    expect(values.name).toBe('a');
    expect(values.port).toBe('');
    expect(values.team).toBe('');
    expect(values).not.toHaveProperty('evil');
  });
});

describe('formFieldOf', () => {
  it.each([
    ['dependencies[3].service', 'dependencies'],
    ['policy.retries.attempts', 'retries'],
    ['ingress.cloudflareAccess.audience', 'accessAudience'],
    ['port', 'port'],
    ['trafficSplit', '_form'],
    ['If-Match', '_form'],
  ])('%s → %s', (path, field) => {
    expect(formFieldOf(path)).toBe(field);
  });
});
