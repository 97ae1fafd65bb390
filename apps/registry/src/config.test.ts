import { ConfigError } from '@trellis/runtime';
import { loadRegistryConfig } from './config';

describe('loadRegistryConfig', () => {
  it('uses the documented defaults', () => {
    expect(loadRegistryConfig({})).toMatchObject({
      TRELLIS_HTTP_PORT: 8080,
      TRELLIS_HOST: '0.0.0.0',
      TRELLIS_ETCD_ENDPOINTS: ['http://127.0.0.1:2379'],
      TRELLIS_ETCD_PREFIX: '/trellis/',
      TRELLIS_AUTH_AUDIENCE: 'trellis-registry',
      TRELLIS_READS_REQUIRE_AUTH: false,
      TRELLIS_MAX_BODY_BYTES: 65536,
      TRELLIS_SECURE_COOKIES: false,
    });
  });

  it.each([
    ['TRELLIS_HTTP_PORT', '80x'],
    ['TRELLIS_ADMIN_TOKEN', 'short'],
    ['TRELLIS_AUTH_JWKS_URL', 'ftp://idp/jwks'],
    ['TRELLIS_CSRF_SECRET', 'too-short'],
    ['TRELLIS_READS_REQUIRE_AUTH', 'maybe'],
    ['TRELLIS_MAX_BODY_BYTES', '10'],
  ])('refuses a bad %s, naming it', (name, value) => {
    expect(() => loadRegistryConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadRegistryConfig({ [name]: value })).toThrow(name);
  });

  it.each([
    ['TRELLIS_ADMIN_TOKEN', '0123456789abcdef'],
    ['TRELLIS_CSRF_SECRET', '0123456789abcdef0123456789abcdef'],
  ])('refuses %s set together with its _FILE form, naming both', (name, value) => {
    const both = { [name]: value, [`${name}_FILE`]: '/etc/trellis/secret' };
    expect(() => loadRegistryConfig(both)).toThrow(ConfigError);
    expect(() => loadRegistryConfig(both)).toThrow(`${name} and ${name}_FILE are both set`);
  });
});
