// Attacks on the xDS port's TLS before any xDS is spoken, against a real control plane over
// mTLS: sockets that never finish the handshake (silent, or trickling a ClientHello), that
// finish it and never send the HTTP/2 preface, and a flood of them over the cap. Each is closed
// well before Node's default 120 s and counted; a sidecar's mTLS stream is served meanwhile.
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { credentials } from '@grpc/grpc-js';
import { TypeUrl } from '@trellis/envoy-types';
import { createTestPki, socketClosed, startSlowLoris, type TestPki } from '@trellis/testing';
import { AdsTestClient, testNode } from './support/ads-client';
import { eventually, startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';

jest.setTimeout(180_000);

const MAX_PENDING = 20;

describe('the xDS port under TLS attacks', () => {
  let pki: TestPki;
  let h: ControlPlaneHarness;
  const clients: AdsTestClient<'sotw'>[] = [];
  const sockets: Socket[] = [];

  const sidecar = (name: string) => {
    const tls = pki.client('a');
    const client = AdsTestClient.open(h.xdsAddress, 'sotw', undefined, credentials.createSsl(pki.ca, tls.key, tls.cert));
    clients.push(client);
    client.send({ node: testNode('a', name), typeUrl: TypeUrl.Cluster });
    return client;
  };
  const refused = async (reason: string) => {
    const text = await (await fetch(`${h.httpUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`trellis_control_plane_xds_tls_connections_refused_total{reason="${reason}"}`));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  const closed = (socket: Socket) => socketClosed(socket);
  const silent = () =>
    new Promise<Socket>((resolve, reject) => {
      const socket = connectTcp(h.cp.xdsPort, '127.0.0.1', () => resolve(socket));
      sockets.push(socket);
      socket.once('error', reject);
    });
  /** Through the mTLS handshake with a sidecar's certificate, then not a byte of HTTP/2. */
  const handshaken = () =>
    new Promise<Socket>((resolve, reject) => {
      const { cert, key } = pki.client('a');
      const socket = connectTls({ host: '127.0.0.1', port: h.cp.xdsPort, ca: pki.ca, cert, key, ALPNProtocols: ['h2'] }, () =>
        resolve(socket),
      );
      sockets.push(socket);
      socket.once('error', reject);
    });

  beforeAll(async () => {
    pki = createTestPki();
    h = await startControlPlaneHarness({
      TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: false,
      TRELLIS_XDS_TLS_CERT_FILE: pki.server.certFile,
      TRELLIS_XDS_TLS_KEY_FILE: pki.server.keyFile,
      TRELLIS_XDS_TLS_CLIENT_CA_FILE: pki.caFile,
      TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS: 5_000,
      TRELLIS_HTTP2_PREFACE_TIMEOUT_MS: 5_000,
      TRELLIS_TLS_MAX_PENDING_CONNECTIONS: MAX_PENDING,
    });
    await h.store.createService({ name: 'a', team: 'core', protocol: 'http', port: 8080 }, 'test');
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    for (const s of sockets) s.destroy();
    await h?.stop();
    pki?.remove();
  });

  it('closes silent, trickling and preface-less connections, and serves a sidecar meanwhile', async () => {
    const quiet = await Promise.all([silent(), silent(), handshaken(), handshaken()]);
    const loris = await startSlowLoris({ port: h.cp.xdsPort, sockets: 4, mode: 'tls-handshake', intervalMs: 200 });
    try {
      expect((await sidecar('a-during-attack').next()).typeUrl).toBe(TypeUrl.Cluster);
      await Promise.all(quiet.map(closed));
      await loris.allClosed(60_000);
    } finally {
      loris.stop();
    }
    expect(await refused('handshake_timeout')).toBeGreaterThanOrEqual(6);
    expect(await refused('preface_timeout')).toBeGreaterThanOrEqual(2);
  });

  it('closes connections over the cap at accept; a stream already open keeps its config coming', async () => {
    const before = sidecar('a-before-flood');
    const first = await before.next();
    expect(first.typeUrl).toBe(TypeUrl.Cluster);
    before.ack(TypeUrl.Cluster, first);
    const loris = await startSlowLoris({ port: h.cp.xdsPort, sockets: MAX_PENDING * 3, mode: 'tls-handshake' });
    try {
      await eventually(
        'connections over the cap to be refused',
        async () => (await refused('too_many_pending')) >= MAX_PENDING || undefined,
      );
      // The flood holds the cap, yet the stream through its handshake and preface before it is served: a change reaches it.
      await h.store.createService({ name: 'b', team: 'core', protocol: 'http', port: 8080 }, 'test');
      const a = (await h.store.getService('a'))!.value.spec;
      await h.store.updateService({ ...a, dependencies: [{ service: 'b' }] }, 'test');
      const next = await before.next();
      expect(next.typeUrl).toBe(TypeUrl.Cluster);
      expect(next.versionInfo).not.toBe(first.versionInfo);
      await loris.allClosed(60_000);
    } finally {
      loris.stop();
    }
    // The flood is over: a new sidecar connects.
    expect((await sidecar('a-after-flood').next()).typeUrl).toBe(TypeUrl.Cluster);
  });
});
