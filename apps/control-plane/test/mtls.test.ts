// mTLS on the xDS port: a client certificate names the service; a stream whose
// node.cluster differs is refused, a client without a certificate cannot connect.
import { credentials, status as GrpcStatus } from '@grpc/grpc-js';
import { TypeUrl } from '@trellis/envoy-types';
import { AdsTestClient, testNode } from './support/ads-client';
import { startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';
import { createTestPki, type TestPki } from './support/test-pki';

jest.setTimeout(60_000);

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
      TRELLIS_XDS_TLS_CERT_FILE: pki.serverCertFile,
      TRELLIS_XDS_TLS_KEY_FILE: pki.serverKeyFile,
      TRELLIS_XDS_TLS_CLIENT_CA_FILE: pki.caFile,
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
    expect((await client.closedWith(10_000)).code).toBe(GrpcStatus.UNAVAILABLE);
  });
});
