// mTLS on the xDS port: a client certificate names the service; a stream whose
// node.cluster differs is refused, a client without a certificate cannot connect.
import { credentials, status as GrpcStatus } from '@grpc/grpc-js';
import { TypeUrl } from '@trellis/envoy-types';
import { SDS_WORKLOAD_CERTIFICATE, SIDECAR_CERTIFICATE_DIR, sidecarSdsPath } from '@trellis/mesh-schema';
import { createTestPki, eventually, type TestPki } from '@trellis/testing';
import { AdsTestClient, testNode } from './support/ads-client';
import { startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';

jest.setTimeout(120_000);

const ADMIN_TOKEN = 'test-admin-token-0123456789';
/** Bootstraps are not open here (xDS requires certificates): the admin token reads them. */
const asAdmin = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
describe('xDS over mTLS', () => {
  let pki: TestPki;
  let h: ControlPlaneHarness;
  const clients: AdsTestClient<'sotw'>[] = [];
  const open = (service: string | undefined) => {
    const tls = service ? pki.client(service) : undefined;
    const channel = credentials.createSsl(pki.ca, tls?.key ?? null, tls?.cert ?? null);
    const c = AdsTestClient.open(h.xdsAddress, 'sotw', undefined, channel);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    pki = createTestPki();
    h = await startControlPlaneHarness({
      TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: false,
      TRELLIS_XDS_TLS_CERT_FILE: pki.server.certFile,
      TRELLIS_XDS_TLS_KEY_FILE: pki.server.keyFile,
      TRELLIS_XDS_TLS_CLIENT_CA_FILE: pki.caFile,
      TRELLIS_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    await h.store.createService({ name: 'a', team: 'core', protocol: 'http', port: 8080 }, 'test');
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await h?.stop();
    pki?.remove();
  });

  it('serves a client whose certificate names its node.cluster', async () => {
    const client = open('a');
    client.send({ node: testNode('a', 'a-mtls'), typeUrl: TypeUrl.Cluster });
    expect((await client.next()).typeUrl).toBe(TypeUrl.Cluster);
  });

  it('refuses a client whose certificate names another service', async () => {
    const client = open('b');
    client.send({ node: testNode('a', 'a-impostor'), typeUrl: TypeUrl.Cluster });
    const closed = await client.closedWith();
    expect(closed.code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect(closed.details).toMatch(/certificate names service "b", not node.cluster "a"/);
  });

  it('does not let a client without a certificate connect', async () => {
    const client = open(undefined);
    client.send({ node: testNode('a', 'a-nocert'), typeUrl: TypeUrl.Cluster });
    expect((await client.closedWith()).code).toBe(GrpcStatus.UNAVAILABLE);
  });

  it("renders bootstraps that reach xDS over TLS with the sidecar's certificate, and no token", async () => {
    // The control plane knows `a` once its watch has applied the create (a 404 until then).
    const res = await eventually(
      'the bootstrap of a',
      async () => {
        const r = await fetch(
          `${h.httpUrl}/bootstrap/a?node=a-1&app_port=18081&cert_file=/run/creds/a.crt&key_file=/run/creds/a.key&format=json`,
          asAdmin,
        );
        return r.status === 404 ? undefined : r;
      },
      60_000,
      { intervalMs: 200 },
    );
    expect(res.status).toBe(200);
    const text = await res.text();
    const tls = JSON.parse(text).static_resources.clusters.find((c: { name: string }) => c.name === 'trellis-xds').transport_socket;
    expect(tls.typed_config).toMatchObject({
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
      common_tls_context: {
        validation_context: { trusted_ca: { filename: '/etc/trellis/xds/ca.crt' } },
        tls_certificates: [{ certificate_chain: { filename: '/run/creds/a.crt' }, private_key: { filename: '/run/creds/a.key' } }],
      },
    });
    expect(text).not.toContain('TRELLIS_XDS_TOKEN');
    const relative = await fetch(`${h.httpUrl}/bootstrap/a?app_port=18081&cert_file=creds/a.crt`, asAdmin);
    expect(relative.status).toBe(400);
    expect(await relative.json()).toMatchObject({ errors: [{ field: 'cert_file' }] });
    const halfPair = await fetch(`${h.httpUrl}/bootstrap/a?app_port=18081&cert_file=/run/creds/a.crt`, asAdmin);
    expect(halfPair.status).toBe(400);
    expect(await halfPair.json()).toMatchObject({ errors: [{ field: 'key_file' }] });
  });

  it('renders bootstraps that present the workload certificate over path-based SDS when no certificate files are named', async () => {
    const res = await fetch(`${h.httpUrl}/bootstrap/a?node=a-1&app_port=18081&format=json`, asAdmin);
    expect(res.status).toBe(200);
    const text = await res.text();
    const tls = JSON.parse(text).static_resources.clusters.find((c: { name: string }) => c.name === 'trellis-xds').transport_socket;
    expect(tls.typed_config.common_tls_context.tls_certificates).toBeUndefined();
    expect(tls.typed_config.common_tls_context.tls_certificate_sds_secret_configs).toEqual([
      {
        name: SDS_WORKLOAD_CERTIFICATE,
        sds_config: {
          path_config_source: { path: sidecarSdsPath(SDS_WORKLOAD_CERTIFICATE), watched_directory: { path: SIDECAR_CERTIFICATE_DIR } },
          resource_api_version: 'V3',
        },
      },
    ]);
    expect(text).not.toContain('TRELLIS_XDS_TOKEN');
  });
});
