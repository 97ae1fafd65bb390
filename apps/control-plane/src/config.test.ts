import { ConfigError } from '@trellis/runtime';
import { loadControlPlaneConfig } from './config';

describe('loadControlPlaneConfig', () => {
  it('has the documented defaults', () => {
    const config = loadControlPlaneConfig({});
    expect(config).toMatchObject({
      TRELLIS_XDS_PORT: 18000,
      TRELLIS_HTTP_PORT: 18080,
      TRELLIS_HOST: '0.0.0.0',
      TRELLIS_AUTHZ_ADDRESS: { host: '127.0.0.1', port: 9191 },
      TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: false,
      TRELLIS_XDS_DEBOUNCE_MS: 100,
      TRELLIS_XDS_DEBOUNCE_MAX_MS: 500,
    });
    expect(config.TRELLIS_CONTROL_PLANE_ID).toMatch(/-\d+$/);
  });

  it('parses host:port addresses, IPv6 included', () => {
    expect(loadControlPlaneConfig({ TRELLIS_AUTHZ_ADDRESS: 'authz.mesh.svc:9191' }).TRELLIS_AUTHZ_ADDRESS).toEqual({
      host: 'authz.mesh.svc',
      port: 9191,
    });
    expect(loadControlPlaneConfig({ TRELLIS_XDS_ADVERTISE_ADDRESS: '[::1]:18000' }).TRELLIS_XDS_ADVERTISE_ADDRESS).toEqual([
      { host: '::1', port: 18000 },
    ]);
    // Every replica, comma-separated.
    expect(loadControlPlaneConfig({ TRELLIS_XDS_ADVERTISE_ADDRESS: 'cp-0.cp:18000, cp-1.cp:18000' }).TRELLIS_XDS_ADVERTISE_ADDRESS).toEqual(
      [
        { host: 'cp-0.cp', port: 18000 },
        { host: 'cp-1.cp', port: 18000 },
      ],
    );
    expect(() => loadControlPlaneConfig({ TRELLIS_XDS_ADVERTISE_ADDRESS: 'cp-0:18000,cp-1' })).toThrow(/TRELLIS_XDS_ADVERTISE_ADDRESS/);
  });

  it('takes the admin token or a file holding it, never both (which would rule is a guess)', () => {
    expect(loadControlPlaneConfig({ TRELLIS_ADMIN_TOKEN_FILE: '/run/secrets/admin-token' }).TRELLIS_ADMIN_TOKEN_FILE).toBe(
      '/run/secrets/admin-token',
    );
    expect(() =>
      loadControlPlaneConfig({ TRELLIS_ADMIN_TOKEN: 'cp-admin-token-0123456789', TRELLIS_ADMIN_TOKEN_FILE: '/run/secrets/admin-token' }),
    ).toThrow('TRELLIS_ADMIN_TOKEN and TRELLIS_ADMIN_TOKEN_FILE are both set: set one');
  });

  it('leaves span export off unless a collector is named, and bounds the sampling percentage', () => {
    expect(loadControlPlaneConfig({}).TRELLIS_TRACING_OTLP_ADDRESS).toBeUndefined();
    expect(loadControlPlaneConfig({ TRELLIS_TRACING_OTLP_ADDRESS: 'otel-collector.observability:4317' })).toMatchObject({
      TRELLIS_TRACING_OTLP_ADDRESS: { host: 'otel-collector.observability', port: 4317 },
      TRELLIS_TRACING_SAMPLING_PERCENT: 1,
    });
    expect(() => loadControlPlaneConfig({ TRELLIS_TRACING_SAMPLING_PERCENT: '150' })).toThrow(/TRELLIS_TRACING_SAMPLING_PERCENT/);
    expect(() => loadControlPlaneConfig({ TRELLIS_TRACING_OTLP_ADDRESS: 'collector' })).toThrow(/TRELLIS_TRACING_OTLP_ADDRESS/);
  });

  it('bounds what a TLS connection on the xDS port may cost before it is through (10 s, 10 s, 1,000 by default)', () => {
    expect(loadControlPlaneConfig({})).toMatchObject({
      TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS: 10_000,
      TRELLIS_HTTP2_PREFACE_TIMEOUT_MS: 10_000,
      TRELLIS_TLS_MAX_PENDING_CONNECTIONS: 1_000,
    });
    expect(loadControlPlaneConfig({ TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS: '5000' }).TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS).toBe(5_000);
    // Not Node's 120 s back again, nor a deadline no real client meets.
    expect(() => loadControlPlaneConfig({ TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS: '300000' })).toThrow(/TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS/);
    expect(() => loadControlPlaneConfig({ TRELLIS_HTTP2_PREFACE_TIMEOUT_MS: '10' })).toThrow(/TRELLIS_HTTP2_PREFACE_TIMEOUT_MS/);
    expect(() => loadControlPlaneConfig({ TRELLIS_TLS_MAX_PENDING_CONNECTIONS: '0' })).toThrow(/TRELLIS_TLS_MAX_PENDING_CONNECTIONS/);
  });

  it('closes idle xDS connections after 5 minutes and ages them out after 30 (10 s grace); 0 turns either off', () => {
    expect(loadControlPlaneConfig({})).toMatchObject({
      TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS: 300_000,
      TRELLIS_GRPC_MAX_CONNECTION_AGE_MS: 1_800_000,
      TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS: 10_000,
    });
    expect(loadControlPlaneConfig({ TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS: '0', TRELLIS_GRPC_MAX_CONNECTION_AGE_MS: '0' })).toMatchObject({
      TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS: 0,
      TRELLIS_GRPC_MAX_CONNECTION_AGE_MS: 0,
    });
    // Under a second would close connections between calls.
    expect(() => loadControlPlaneConfig({ TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS: '500' })).toThrow(/TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS/);
    expect(() => loadControlPlaneConfig({ TRELLIS_GRPC_MAX_CONNECTION_AGE_MS: '-1' })).toThrow(/TRELLIS_GRPC_MAX_CONNECTION_AGE_MS/);
    expect(() => loadControlPlaneConfig({ TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS: 'soon' })).toThrow(
      /TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS/,
    );
  });

  it('names the variable that is wrong', () => {
    expect(() => loadControlPlaneConfig({ TRELLIS_AUTHZ_ADDRESS: 'no-port' })).toThrow(/TRELLIS_AUTHZ_ADDRESS: must be host:port/);
    expect(() => loadControlPlaneConfig({ TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: 'maybe' })).toThrow(/TRELLIS_XDS_ALLOW_INSECURE_CLIENTS/);
    expect(() => loadControlPlaneConfig({ TRELLIS_XDS_TLS_CERT_FILE: '/x.crt' })).toThrow(ConfigError);
    expect(() => loadControlPlaneConfig({ TRELLIS_XDS_TLS_CERT_FILE: '/x.crt' })).toThrow(/TRELLIS_XDS_TLS_KEY_FILE: required/);
    expect(() => loadControlPlaneConfig({ TRELLIS_XDS_TLS_CLIENT_CA_FILE: '/ca.crt' })).toThrow(/TRELLIS_XDS_TLS_CLIENT_CA_FILE/);
  });
});
