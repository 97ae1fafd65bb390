import { AgentConfigError, resolveAgentConfig, type AgentFlags } from './agent-config';

const base: NodeJS.ProcessEnv = {
  TRELLIS_SERVICE: 'orders',
  TRELLIS_INSTANCE_ID: 'orders-1',
  TRELLIS_PORT: '8080',
  TRELLIS_REGISTRY_URL: 'http://registry:8080',
  TRELLIS_SERVICE_SECRET: 's3cret',
};
const resolve = (flags: AgentFlags, env: NodeJS.ProcessEnv = {}) => resolveAgentConfig(flags, { ...base, ...env });
const problems = (flags: AgentFlags, env: NodeJS.ProcessEnv = {}): string => {
  try {
    resolve(flags, env);
  } catch (err) {
    if (err instanceof AgentConfigError) return err.message;
    throw err;
  }
  throw new Error('expected the configuration to be refused');
};

describe('agent configuration: workload certificate and xDS relay', () => {
  it('keeps the certificate in --certificate-dir from the mesh CA at --authz, proving the service with its credential or a token file', () => {
    expect(resolve({ certificateDir: '/run/trellis/certs', authz: 'http://authz:8181' }).certificate).toEqual({
      dir: '/run/trellis/certs',
      authzUrl: 'http://authz:8181',
      trustBundleRefreshMs: 300_000,
    });
    const k8s = resolve(
      {},
      {
        TRELLIS_CERTIFICATE_DIR: '/var/run/trellis',
        TRELLIS_AUTHZ_URL: 'http://authz:8181',
        TRELLIS_K8S_TOKEN_FILE: '/var/run/secrets/tokens/trellis-ca',
        TRELLIS_TRUST_BUNDLE_REFRESH: '30s',
      },
    ).certificate;
    expect(k8s).toMatchObject({ kubernetesTokenFile: '/var/run/secrets/tokens/trellis-ca', trustBundleRefreshMs: 30_000 });
    expect(problems({ certificateDir: '/run/trellis/certs' })).toMatch(/--certificate-dir needs authz's HTTP URL/);
  });

  it("asks the Envoy sidecar's xDS token on authz's mTLS port with the workload certificate", () => {
    const envoy = { envoyBootstrap: '/run/trellis/envoy.yaml', appPort: '8080', controlPlane: 'http://cp:18080' };
    const config = resolve({
      ...envoy,
      certificateDir: '/run/trellis/certs',
      authz: 'http://authz:8181',
      authzMtls: 'https://authz:8443',
    });
    expect(config.envoy).toMatchObject({ authzUrl: 'http://authz:8181', authzMtlsUrl: 'https://authz:8443' });
    expect(config.certificate?.dir).toBe('/run/trellis/certs');
    expect(problems({ ...envoy, authzMtls: 'https://authz:8443' })).toMatch(/--authz-mtls needs --certificate-dir/);
    expect(problems({ ...envoy, certificateDir: '/c', authz: 'http://authz:8181', authzMtls: 'http://authz:8443' })).toMatch(
      /--authz-mtls must be authz's https:\/\/ mTLS URL/,
    );
  });

  it("takes the sidecar's own admin, outbound and ready ports as trellis bootstrap does: flags, else the unit's environment", () => {
    const envoy = { envoyBootstrap: '/run/trellis/envoy.yaml', appPort: '8080', controlPlane: 'http://cp:18080' };
    expect(resolve({ ...envoy, adminPort: '15100', outboundPort: '15101', readyPort: '15102' }).envoy?.sidecar).toEqual({
      adminPort: 15100,
      outboundPort: 15101,
      readyPort: 15102,
    });
    // The environment file a VM's sidecar units share records the ports; a flag wins over it.
    const fromEnv = resolve(
      { ...envoy, adminPort: '15200' },
      { TRELLIS_ENVOY_ADMIN_PORT: '15100', TRELLIS_OUTBOUND_PORT: '15101', TRELLIS_XDS_CA_FILE: '/etc/trellis/xds/ca.crt' },
    );
    expect(fromEnv.envoy?.sidecar).toEqual({ adminPort: 15200, outboundPort: 15101, tls: { caFile: '/etc/trellis/xds/ca.crt' } });
    expect(resolve(envoy).envoy?.sidecar).toEqual({});
    expect(problems({ ...envoy, outboundPort: '70000' })).toMatch(
      /--outbound-port \(TRELLIS_OUTBOUND_PORT\) must be a port from 1 to 65535, got "70000"/,
    );
    expect(problems({ ...envoy }, { TRELLIS_ENVOY_READY_PORT: 'ready' })).toMatch(
      /--ready-port \(TRELLIS_ENVOY_READY_PORT\) must be a port/,
    );
  });

  it('serves the relay on loopback or a Unix socket only, and only with a certificate to reach the control plane', () => {
    const withCert = { certificateDir: '/run/trellis/certs', authz: 'http://authz:8181', xdsServer: 'cp.internal:18000' };
    expect(resolve({ ...withCert, xdsRelay: '127.0.0.1:15010', grpcBootstrap: '/run/trellis/grpc.json' }).xdsRelay).toEqual({
      listen: { kind: 'tcp', host: '127.0.0.1', port: 15010 },
      upstream: 'cp.internal:18000',
      maxStreamsPerUpstream: 8,
      limits: { maxStreams: 64, maxStreamsPerConnection: 16, maxConnections: 64, maxConnectionIdleMs: 300_000 },
      grpcBootstrapPath: '/run/trellis/grpc.json',
    });
    expect(resolve({ ...withCert, xdsRelay: '127.0.0.1:15010', xdsRelayStreamsPerConnection: '4' }).xdsRelay?.maxStreamsPerUpstream).toBe(
      4,
    );
    expect(problems({ ...withCert, xdsRelay: '127.0.0.1:15010', xdsRelayStreamsPerConnection: '0' })).toMatch(
      /xDS relay streams per connection \(TRELLIS_XDS_RELAY_STREAMS_PER_CONNECTION\) must be a whole number from 1 to 1000, got "0"/,
    );
    expect(
      resolve(
        { ...withCert, xdsRelay: '127.0.0.1:15010', xdsRelayMaxStreams: '32', xdsRelayIdleTimeout: '0' },
        { TRELLIS_XDS_RELAY_MAX_CLIENT_STREAMS: '2', TRELLIS_XDS_RELAY_MAX_CONNECTIONS: '8' },
      ).xdsRelay?.limits,
    ).toEqual({ maxStreams: 32, maxStreamsPerConnection: 2, maxConnections: 8, maxConnectionIdleMs: 0 });
    expect(problems({ ...withCert, xdsRelay: '127.0.0.1:15010', xdsRelayMaxStreams: '0' })).toMatch(
      /xDS relay max streams \(TRELLIS_XDS_RELAY_MAX_STREAMS\) must be a whole number from 1 to 10000, got "0"/,
    );
    expect(problems({ ...withCert, xdsRelay: '127.0.0.1:15010', xdsRelayMaxClientStreams: '1001' })).toMatch(
      /TRELLIS_XDS_RELAY_MAX_CLIENT_STREAMS\) must be a whole number from 1 to 1000/,
    );
    expect(problems({ ...withCert, xdsRelay: '127.0.0.1:15010', xdsRelayMaxConnections: 'many' })).toMatch(
      /TRELLIS_XDS_RELAY_MAX_CONNECTIONS\) must be a whole number/,
    );
    // Below a second it would close connections between streams.
    expect(problems({ ...withCert, xdsRelay: '127.0.0.1:15010', xdsRelayIdleTimeout: '500ms' })).toMatch(
      /TRELLIS_XDS_RELAY_IDLE_TIMEOUT\) must be 0 \(never\) or at least 1s/,
    );
    expect(resolve({ ...withCert, xdsRelay: 'unix:/run/trellis/xds.sock' }).xdsRelay?.listen).toEqual({
      kind: 'unix',
      path: '/run/trellis/xds.sock',
    });
    expect(problems({ ...withCert, xdsRelay: '0.0.0.0:15010' })).toMatch(/must be a loopback address/);
    expect(problems({ xdsRelay: '127.0.0.1:15010', xdsServer: 'cp:18000' })).toMatch(/--xds-relay needs --certificate-dir/);
    expect(problems({ ...withCert, xdsServer: undefined, xdsRelay: '127.0.0.1:15010' })).toMatch(/xds server is required/);
    expect(problems({ ...withCert, xdsServer: 'http://cp:18000', xdsRelay: '127.0.0.1:15010' })).toMatch(/must be host:port/);
    expect(problems({ ...withCert, grpcBootstrap: '/run/trellis/grpc.json' })).toMatch(
      /--grpc-bootstrap names the relay: it needs --xds-relay/,
    );
  });
});
