import { ConfigError } from '@trellis/runtime';
import { loadAuthzConfig } from './config';

describe('loadAuthzConfig', () => {
  it('has the documented defaults', () => {
    expect(loadAuthzConfig({})).toMatchObject({
      TRELLIS_GRPC_PORT: 9191,
      TRELLIS_HTTP_PORT: 8181,
      TRELLIS_HOST: '0.0.0.0',
      TRELLIS_REDIS_URL: 'redis://127.0.0.1:6379',
      TRELLIS_TOKEN_TTL_SECONDS: 900,
      TRELLIS_TOKEN_CACHE_TTL_SECONDS: 780,
      TRELLIS_TOKEN_ISSUER: 'trellis',
      TRELLIS_CLOCK_SKEW_SECONDS: 30,
      TRELLIS_ETCD_PREFIX: '/trellis/',
      TRELLIS_CLOUDFLARE_CERTS_URL_TEMPLATE: 'https://{teamDomain}/cdn-cgi/access/certs',
      TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS: 10_000,
      TRELLIS_HTTP2_PREFACE_TIMEOUT_MS: 10_000,
      TRELLIS_TLS_MAX_PENDING_CONNECTIONS: 1_000,
      // Idle connections close after 5 minutes; no age limit (config.ts says why).
      TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS: 300_000,
      TRELLIS_GRPC_MAX_CONNECTION_AGE_MS: 0,
      TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS: 10_000,
    });
  });

  it.each([
    [{ TRELLIS_GRPC_PORT: 'abc' }, 'TRELLIS_GRPC_PORT'],
    [{ TRELLIS_REDIS_URL: 'http://redis:6379' }, 'TRELLIS_REDIS_URL'],
    [{ TRELLIS_TOKEN_CACHE_TTL_SECONDS: '880' }, 'TRELLIS_TOKEN_CACHE_TTL_SECONDS'],
    [{ TRELLIS_CLOUDFLARE_CERTS_URL_TEMPLATE: 'https://example.com/certs' }, 'TRELLIS_CLOUDFLARE_CERTS_URL_TEMPLATE'],
    [{ TRELLIS_SIGNING_KEY_EPHEMERAL: 'maybe' }, 'TRELLIS_SIGNING_KEY_EPHEMERAL'],
    [{ TRELLIS_TOKEN_TTL_SECONDS: '120', TRELLIS_CLOCK_SKEW_SECONDS: '90' }, 'TRELLIS_CLOCK_SKEW_SECONDS'],
    [{ TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS: '300000' }, 'TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS'],
    [{ TRELLIS_HTTP2_PREFACE_TIMEOUT_MS: 'soon' }, 'TRELLIS_HTTP2_PREFACE_TIMEOUT_MS'],
    [{ TRELLIS_TLS_MAX_PENDING_CONNECTIONS: '0' }, 'TRELLIS_TLS_MAX_PENDING_CONNECTIONS'],
    [{ TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS: '10' }, 'TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS'],
    [{ TRELLIS_GRPC_MAX_CONNECTION_AGE_MS: 'forever' }, 'TRELLIS_GRPC_MAX_CONNECTION_AGE_MS'],
  ])('names the variable of a bad value: %j', (env, variable) => {
    let error: unknown;
    try {
      loadAuthzConfig(env);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain(variable);
  });

  it('derives the cache TTL from the token TTL, the SDK renewal window and the clock skew unless set', () => {
    // Twice MESH_TOKEN_RENEW_BEFORE_SECONDS (60) before exp: a renewing client gets a new token.
    expect(loadAuthzConfig({ TRELLIS_TOKEN_TTL_SECONDS: '300' }).TRELLIS_TOKEN_CACHE_TTL_SECONDS).toBe(180);
    expect(loadAuthzConfig({ TRELLIS_TOKEN_TTL_SECONDS: '300', TRELLIS_CLOCK_SKEW_SECONDS: '150' }).TRELLIS_TOKEN_CACHE_TTL_SECONDS).toBe(
      150,
    );
  });

  it('accepts a cache TTL that leaves exactly the clock skew', () => {
    expect(
      loadAuthzConfig({ TRELLIS_TOKEN_TTL_SECONDS: '600', TRELLIS_TOKEN_CACHE_TTL_SECONDS: '570' }).TRELLIS_TOKEN_CACHE_TTL_SECONDS,
    ).toBe(570);
  });
});
