// Envoy sidecars and mTLS, per mode of the callee: what its inbound listener
// accepts, what its callers' clusters present and check, and which callers RBAC
// admits. The certificates come over path-based SDS from the files the agent
// writes; the SDS files themselves are checked against Envoy's protos here too.
import { TypeUrl, unpackAnyAs, type XdsTypeUrl } from '@trellis/envoy-types';
import { Cluster } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import type { TransportSocket } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import type { FilterChain } from '@trellis/envoy-types/envoy/config/listener/v3/listener_components';
import type { Principal } from '@trellis/envoy-types/envoy/config/rbac/v3/rbac';
import { RBAC } from '@trellis/envoy-types/envoy/extensions/filters/http/rbac/v3/rbac';
import { RBAC as NetworkRBAC } from '@trellis/envoy-types/envoy/extensions/filters/network/rbac/v3/rbac';
import { HttpConnectionManager } from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import { SubjectAltNameMatcher_SanType } from '@trellis/envoy-types/envoy/extensions/transport_sockets/tls/v3/common';
import { Secret } from '@trellis/envoy-types/envoy/extensions/transport_sockets/tls/v3/secret';
import type { CommonTlsContext } from '@trellis/envoy-types/envoy/extensions/transport_sockets/tls/v3/tls';
import { DownstreamTlsContext, UpstreamTlsContext } from '@trellis/envoy-types/envoy/extensions/transport_sockets/tls/v3/tls';
import { ProtoValidator } from '@trellis/envoy-types/validation';
import {
  SDS_TRUST_BUNDLE,
  SDS_WORKLOAD_CERTIFICATE,
  SIDECAR_CERTIFICATE_DIR,
  sidecarSdsFiles,
  sidecarSdsPath,
  type MtlsMode,
  type Protocol,
} from '@trellis/mesh-schema';
import { DEFAULT_TRANSLATOR_SETTINGS, type TranslatorSettings } from '../model';
import { MeshFixture } from '../model/mesh-fixture';
import { buildProxyResources } from './proxy-resources';
import type { ResourceSet } from '../resource';

const envoy = (service: string) => ({ service, kind: 'envoy' as const });

function get<T>(set: ResourceSet, type: XdsTypeUrl, name: string, decoder: { decode(b: Uint8Array): T; $type?: string }): T {
  const resource = set.get(type)!.get(name);
  if (!resource) throw new Error(`no ${type} named ${name}; have ${[...set.get(type)!.keys()].join(', ')}`);
  return unpackAnyAs(decoder as never, resource.any) as T;
}

function typed<T>(socket: TransportSocket | undefined, type: { decode(b: Uint8Array): T; $type?: string }): T {
  if (socket?.configType?.$case !== 'typedConfig') throw new Error('no TLS transport socket');
  expect(socket.name).toBe('envoy.transport_sockets.tls');
  return unpackAnyAs(type as never, socket.configType.value) as T;
}

function hcmOf(chain: FilterChain): HttpConnectionManager {
  const config = chain.filters[0]!.configType;
  if (config?.$case !== 'typedConfig') throw new Error('no typed config');
  return unpackAnyAs(HttpConnectionManager, config.value);
}

function rbacOf(chain: FilterChain): RBAC {
  const filter = hcmOf(chain).httpFilters.find((f) => f.name === 'envoy.filters.http.rbac')!;
  if (filter.configType?.$case !== 'typedConfig') throw new Error('no typed config');
  return unpackAnyAs(RBAC, filter.configType.value);
}

/** Where a secret reference reads from: [name, SDS file, watched directory]. */
function secretSource(config: { name: string; sdsConfig?: { configSourceSpecifier?: unknown } } | undefined) {
  const source = config?.sdsConfig?.configSourceSpecifier as
    { $case: string; value: { path: string; watchedDirectory?: { path: string } } } | undefined;
  if (source?.$case !== 'pathConfigSource') throw new Error(`secret ${config?.name} is not path-based SDS`);
  return [config!.name, source.value.path, source.value.watchedDirectory?.path];
}

/** The secrets a TLS context names: each over path-based SDS, from the sidecar's certificate directory. */
function expectSidecarSecrets(common: CommonTlsContext | undefined) {
  expect(common?.tlsCertificateSdsSecretConfigs.map(secretSource)).toEqual([
    [SDS_WORKLOAD_CERTIFICATE, sidecarSdsPath(SDS_WORKLOAD_CERTIFICATE), SIDECAR_CERTIFICATE_DIR],
  ]);
  if (common?.validationContextType?.$case !== 'combinedValidationContext') throw new Error('no combined validation context');
  const combined = common.validationContextType.value;
  expect(secretSource(combined.validationContextSdsSecretConfig)).toEqual([
    SDS_TRUST_BUNDLE,
    sidecarSdsPath(SDS_TRUST_BUNDLE),
    SIDECAR_CERTIFICATE_DIR,
  ]);
  return combined.defaultValidationContext!;
}

/** b (the callee, in `mode`) is called by a; c calls nothing and nobody. */
function mesh(mode: MtlsMode, protocol: Protocol = 'http', extra: { ingress?: boolean } = {}) {
  return new MeshFixture()
    .key('k1')
    .service('b', {
      protocol,
      port: 9000,
      mtls: mode,
      ...(extra.ingress ? { ingress: { host: 'b.example.com', pathPrefix: '/' } } : {}),
    })
    .service('a', { protocol: 'http', port: 8000, dependencies: [{ service: 'b' }] })
    .instance('b', 'b-1', '10.0.0.1', 9000)
    .model();
}

const inbound = (mode: MtlsMode, protocol: Protocol = 'http', extra: { ingress?: boolean } = {}) =>
  get(buildProxyResources(mesh(mode, protocol, extra), envoy('b')), TypeUrl.Listener, 'inbound|b', Listener);
const callerCluster = (mode: MtlsMode, protocol: Protocol = 'http') =>
  get(buildProxyResources(mesh(mode, protocol), envoy('a')), TypeUrl.Cluster, 'outbound|b', Cluster);

const SPIFFE_A = 'spiffe://trellis.local/svc/a';
const SPIFFE_B = 'spiffe://trellis.local/svc/b';

describe('sidecar inbound listener by mTLS mode', () => {
  it('off: one plaintext chain, no listener filter, no TLS', () => {
    const listener = inbound('off');
    expect(listener.listenerFilters).toEqual([]);
    expect(listener.filterChains.map((c) => c.name)).toEqual(['inbound|b']);
    expect(listener.filterChains[0]!.transportSocket).toBeUndefined();
    expect(listener.filterChains[0]!.filterChainMatch).toBeUndefined();
  });

  it('permissive: the tls_inspector picks a TLS chain (certificate verified when presented) or a plaintext one', () => {
    const listener = inbound('permissive');
    expect(listener.listenerFilters.map((f) => f.name)).toEqual(['envoy.filters.listener.tls_inspector']);
    const [mtls, plaintext] = listener.filterChains;
    expect([mtls!.name, mtls!.filterChainMatch?.transportProtocol]).toEqual(['inbound|b|mtls', 'tls']);
    expect([plaintext!.name, plaintext!.filterChainMatch?.transportProtocol]).toEqual(['inbound|b|plaintext', 'raw_buffer']);
    expect(plaintext!.transportSocket).toBeUndefined();

    const tls = typed(mtls!.transportSocket, DownstreamTlsContext);
    expect(tls.requireClientCertificate).toBe(false);
    expect(tls.commonTlsContext?.alpnProtocols).toEqual(['h2', 'http/1.1']);
    // Any certificate from the mesh CA passes the handshake; who may call is RBAC's decision.
    expect(expectSidecarSecrets(tls.commonTlsContext).matchTypedSubjectAltNames).toEqual([]);

    // Plaintext callers carry no certificate: both chains admit by the verified token alone.
    for (const chain of [mtls!, plaintext!]) {
      const principals = rbacOf(chain).rules!.policies['mesh-callers']!.principals;
      expect(principals.map((p) => p.identifier?.$case)).toEqual(['metadata']);
    }
  });

  it('strict: only TLS with a client certificate; a caller must be the authenticated peer its token names', () => {
    const listener = inbound('strict');
    // Same listener filters as permissive: a switch between them only replaces filter chains.
    expect(listener.listenerFilters.map((f) => f.name)).toEqual(['envoy.filters.listener.tls_inspector']);
    expect(listener.filterChains.map((c) => [c.name, c.filterChainMatch?.transportProtocol])).toEqual([['inbound|b|mtls', 'tls']]);
    const tls = typed(listener.filterChains[0]!.transportSocket, DownstreamTlsContext);
    expect(tls.requireClientCertificate).toBe(true);
    expectSidecarSecrets(tls.commonTlsContext);

    const [caller] = rbacOf(listener.filterChains[0]!).rules!.policies['mesh-callers']!.principals as [Principal];
    if (caller.identifier?.$case !== 'andIds') throw new Error(`expected andIds, got ${caller.identifier?.$case}`);
    const [peer, token] = caller.identifier.value.ids;
    expect(peer!.identifier).toEqual({
      $case: 'authenticated',
      value: expect.objectContaining({ principalName: expect.objectContaining({ matchPattern: { $case: 'exact', value: SPIFFE_A } }) }),
    });
    expect(token!.identifier?.$case).toBe('metadata');
    expect(JSON.stringify(token)).toContain('"value":"a"');
  });

  it('strict with no declared caller: RBAC has no policy and refuses everyone', () => {
    const model = new MeshFixture().key('k1').service('b', { protocol: 'http', port: 9000, mtls: 'strict' }).model();
    const listener = get(buildProxyResources(model, envoy('b')), TypeUrl.Listener, 'inbound|b', Listener);
    expect(rbacOf(listener.filterChains[0]!).rules!.policies).toEqual({});
  });

  it('strict public service: the edge policy stays (the edge must present a mesh certificate to get in)', () => {
    const policies = rbacOf(inbound('strict', 'http', { ingress: true }).filterChains[0]!).rules!.policies;
    expect(Object.keys(policies).sort()).toEqual(['edge', 'mesh-callers']);
  });

  it('strict TCP: network RBAC admits the declared callers by certificate before tcp_proxy opens anything', () => {
    const chain = inbound('strict', 'tcp').filterChains[0]!;
    expect(chain.filters.map((f) => f.name)).toEqual(['envoy.filters.network.rbac', 'envoy.filters.network.tcp_proxy']);
    const config = chain.filters[0]!.configType;
    if (config?.$case !== 'typedConfig') throw new Error('no typed config');
    const rbac = unpackAnyAs(NetworkRBAC, config.value);
    expect(rbac.statPrefix).toBe('inbound_b_rbac');
    expect(JSON.stringify(rbac.rules!.policies['mesh-callers']!.principals)).toContain(SPIFFE_A);
    const tls = typed(chain.transportSocket, DownstreamTlsContext);
    expect([tls.requireClientCertificate, tls.commonTlsContext?.alpnProtocols]).toEqual([true, []]);
  });

  it('permissive TCP: no RBAC on either chain (a plaintext caller has nothing to show)', () => {
    for (const chain of inbound('permissive', 'tcp').filterChains) {
      expect(chain.filters.map((f) => f.name)).toEqual(['envoy.filters.network.tcp_proxy']);
    }
  });
});

describe("callers' clusters by the callee's mode", () => {
  it('off: plaintext, whatever the caller does', () => {
    expect(callerCluster('off').transportSocket).toBeUndefined();
  });

  it.each(['permissive', 'strict'] as const)('%s: mTLS with SNI, accepting only the callee’s SPIFFE ID as URI SAN', (mode) => {
    const tls = typed(callerCluster(mode).transportSocket, UpstreamTlsContext);
    expect(tls.sni).toBe('b.svc.trellis.local');
    expect(tls.commonTlsContext?.alpnProtocols).toEqual(['http/1.1']);
    expect(expectSidecarSecrets(tls.commonTlsContext).matchTypedSubjectAltNames).toEqual([
      expect.objectContaining({
        sanType: SubjectAltNameMatcher_SanType.URI,
        matcher: expect.objectContaining({ matchPattern: { $case: 'exact', value: SPIFFE_B } }),
      }),
    ]);
  });

  it('offers h2 to grpc callees and nothing over TCP; a TCP dependency cluster checks the callee too', () => {
    expect(typed(callerCluster('strict', 'grpc').transportSocket, UpstreamTlsContext).commonTlsContext?.alpnProtocols).toEqual(['h2']);
    const tcp = typed(callerCluster('strict', 'tcp').transportSocket, UpstreamTlsContext);
    expect(tcp.commonTlsContext?.alpnProtocols).toEqual([]);
    expect(JSON.stringify(tcp)).toContain(SPIFFE_B);
  });

  it('every subset cluster of a split callee carries the same TLS', () => {
    const model = new MeshFixture()
      .service('b', {
        protocol: 'grpc',
        port: 9000,
        mtls: 'strict',
        trafficSplit: [
          { name: 'stable', labels: { track: 'stable' }, weight: 90 },
          { name: 'canary', labels: { track: 'canary' }, weight: 10 },
        ],
      })
      .service('a', { dependencies: [{ service: 'b' }] })
      .model();
    const set = buildProxyResources(model, envoy('a'));
    for (const name of ['outbound|b|stable', 'outbound|b|canary']) {
      expect(typed(get(set, TypeUrl.Cluster, name, Cluster).transportSocket, UpstreamTlsContext).sni).toBe('b.svc.trellis.local');
    }
  });

  it("a caller's own mode does not matter: a strict caller calls an off callee in plaintext and an off caller calls a strict callee over mTLS", () => {
    const model = new MeshFixture()
      .service('strict-caller', { protocol: 'http', mtls: 'strict', dependencies: [{ service: 'open' }] })
      .service('open', { protocol: 'http', port: 9000, mtls: 'off' })
      .service('off-caller', { protocol: 'http', mtls: 'off', dependencies: [{ service: 'locked' }] })
      .service('locked', { protocol: 'http', port: 9001, mtls: 'strict' })
      .model();
    expect(
      get(buildProxyResources(model, envoy('strict-caller')), TypeUrl.Cluster, 'outbound|open', Cluster).transportSocket,
    ).toBeUndefined();
    expect(get(buildProxyResources(model, envoy('off-caller')), TypeUrl.Cluster, 'outbound|locked', Cluster).transportSocket).toBeDefined();
  });

  it('the trust domain from mesh settings names the callee', () => {
    const fixture = new MeshFixture()
      .service('b', { protocol: 'http', port: 9000, mtls: 'strict' })
      .service('a', { protocol: 'http', dependencies: [{ service: 'b' }] });
    fixture.meshSettings = { ...fixture.meshSettings!, trustDomain: 'prod.example.org' };
    const tls = typed(
      get(buildProxyResources(fixture.model(), envoy('a')), TypeUrl.Cluster, 'outbound|b', Cluster).transportSocket,
      UpstreamTlsContext,
    );
    expect(tls.sni).toBe('b.svc.prod.example.org');
    expect(JSON.stringify(tls)).toContain('spiffe://prod.example.org/svc/b');
  });
});

describe('the SDS files beside the certificate', () => {
  let validator: ProtoValidator;
  beforeAll(() => {
    validator = ProtoValidator.load();
  });

  it('hold one Secret each, named as the TLS contexts reference it, naming the agent’s files; Envoy’s protos accept them', () => {
    const files = sidecarSdsFiles();
    expect(files.map((f) => `${SIDECAR_CERTIFICATE_DIR}/${f.fileName}`)).toEqual([
      sidecarSdsPath(SDS_WORKLOAD_CERTIFICATE),
      sidecarSdsPath(SDS_TRUST_BUNDLE),
    ]);
    const secretType = validator.root.lookupType('envoy.extensions.transport_sockets.tls.v3.Secret');
    const secrets = files.map((file) => {
      const { resources } = JSON.parse(file.text) as { resources: Array<Record<string, unknown>> };
      expect(resources).toHaveLength(1);
      const { '@type': type, ...fields } = resources[0]!;
      expect(type).toBe('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret');
      // Proto-JSON (snake_case, as Envoy reads it) → protobuf bytes → the generated type.
      const bytes = secretType.encode(secretType.fromObject(fields)).finish();
      expect(validator.validateBytes('envoy.extensions.transport_sockets.tls.v3.Secret', bytes)).toEqual([]);
      return Secret.decode(bytes);
    });
    const [certificate, bundle] = secrets;
    expect(certificate!.name).toBe(SDS_WORKLOAD_CERTIFICATE);
    if (certificate!.type?.$case !== 'tlsCertificate') throw new Error('no tls_certificate');
    expect(certificate!.type.value.certificateChain?.specifier).toEqual({
      $case: 'filename',
      value: `${SIDECAR_CERTIFICATE_DIR}/cert.pem`,
    });
    expect(certificate!.type.value.privateKey?.specifier).toEqual({ $case: 'filename', value: `${SIDECAR_CERTIFICATE_DIR}/key.pem` });
    expect(certificate!.type.value.watchedDirectory?.path).toBe(SIDECAR_CERTIFICATE_DIR);
    expect(bundle!.name).toBe(SDS_TRUST_BUNDLE);
    if (bundle!.type?.$case !== 'validationContext') throw new Error('no validation_context');
    expect(bundle!.type.value.trustedCa?.specifier).toEqual({ $case: 'filename', value: `${SIDECAR_CERTIFICATE_DIR}/ca.pem` });
    expect(bundle!.type.value.watchedDirectory?.path).toBe(SIDECAR_CERTIFICATE_DIR);
  });
});

describe('the ext_authz cluster', () => {
  const authzOf = (settings: Partial<TranslatorSettings>) => {
    const model = new MeshFixture()
      .service('b', { protocol: 'http', port: 9000 })
      .service('a', { protocol: 'http', dependencies: [{ service: 'b' }] })
      .model({ ...DEFAULT_TRANSLATOR_SETTINGS, ...settings });
    return get(buildProxyResources(model, envoy('a')), TypeUrl.Cluster, 'trellis-authz', Cluster);
  };

  it("presents the workload certificate (authz takes the caller from it) and accepts only authz's own SPIFFE ID", () => {
    const tls = typed(authzOf({ authzCluster: { host: 'authz.trellis.svc', port: 9191 } }).transportSocket, UpstreamTlsContext);
    expect(tls.sni).toBe('authz.trellis.svc');
    expect(tls.commonTlsContext?.alpnProtocols).toEqual(['h2']);
    expect(expectSidecarSecrets(tls.commonTlsContext).matchTypedSubjectAltNames).toEqual([
      expect.objectContaining({
        sanType: SubjectAltNameMatcher_SanType.URI,
        matcher: expect.objectContaining({ matchPattern: { $case: 'exact', value: 'spiffe://trellis.local/trellis/authz' } }),
      }),
    ]);
  });

  it('sends no SNI to an IP literal, and speaks plaintext only when told authz serves plaintext', () => {
    expect(typed(authzOf({ authzCluster: { host: '10.0.0.9', port: 9191 } }).transportSocket, UpstreamTlsContext).sni).toBe('');
    expect(authzOf({ authzTls: false }).transportSocket).toBeUndefined();
  });
});
