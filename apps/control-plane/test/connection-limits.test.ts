// Idle and aged connections on the xDS port (gRFC A9), against a real control plane with the limits set
// small: a client through mTLS and the HTTP/2 preface that then stays silent is closed after the idle
// limit, where before keepalive (which it answers) kept it forever; a sidecar's open ADS stream is never
// idle, however quiet, and keeps getting its config. Past the age limit a client gets GOAWAY `max_age`,
// and its open ADS streams end with UNAVAILABLE and a reason right after it (not cut at the grace, which
// grpc-js clients read as INTERNAL); a proxyless client (grpc-js-xds) reopens its stream on a new
// connection, its calls unaffected and its config still flowing.
import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2';
import { credentials, status } from '@grpc/grpc-js';
import { TypeUrl } from '@trellis/envoy-types';
import { DiscoveryRequest } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { createTestPki, openHttp2Session, startEtcd, type TestEtcd, type TestPki } from '@trellis/testing';
import { MAX_AGE_REASON } from '../src/xds/connection-age';
import { AdsTestClient, testNode } from './support/ads-client';
import { eventually, startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';
import { startWhoServer } from './support/who-service';
import { XdsClientProcess } from './support/xds-client-process';

jest.setTimeout(180_000);

const IDLE_MS = 1_000;
/** Several idle limits: how long an ADS stream stays quiet to show the idle limit leaves it alone. */
const QUIET_MS = 5 * IDLE_MS;
const WITHIN_MS = 60_000;

let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(() => etcd?.close());

describe('the xDS port closes idle connections, never one with an open ADS stream', () => {
  let pki: TestPki;
  let h: ControlPlaneHarness;
  const clients: AdsTestClient<'sotw'>[] = [];
  const sessions: ClientHttp2Session[] = [];

  beforeAll(async () => {
    pki = createTestPki();
    h = await startControlPlaneHarness(
      {
        TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: false,
        TRELLIS_XDS_TLS_CERT_FILE: pki.server.certFile,
        TRELLIS_XDS_TLS_KEY_FILE: pki.server.keyFile,
        TRELLIS_XDS_TLS_CLIENT_CA_FILE: pki.caFile,
        TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS: IDLE_MS,
        TRELLIS_GRPC_MAX_CONNECTION_AGE_MS: 0,
      },
      undefined,
      etcd,
    );
    await h.store.createService({ name: 'a', team: 'core', protocol: 'http', port: 8080 }, 'test');
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    for (const s of sessions) s.destroy();
    await h?.stop();
    pki?.remove();
  });

  it('closes a connection through its mTLS handshake and HTTP/2 preface that opens no stream (GOAWAY NO_ERROR)', async () => {
    const { cert, key } = pki.client('a');
    const { session, goaways } = await openHttp2Session(`https://127.0.0.1:${h.cp.xdsPort}`, {
      ca: pki.ca,
      cert,
      key,
      servername: 'localhost',
    });
    sessions.push(session);
    await eventually('the idle connection to be closed', () => session.closed || session.destroyed, WITHIN_MS);
    expect(goaways[0]).toMatchObject({ code: 0 });
  });

  it("keeps a sidecar's quiet ADS stream and its connection: a change made after several idle limits reaches it", async () => {
    const tls = pki.client('a');
    const sidecar = AdsTestClient.open(h.xdsAddress, 'sotw', undefined, credentials.createSsl(pki.ca, tls.key, tls.cert));
    clients.push(sidecar);
    sidecar.send({ node: testNode('a', 'a-quiet'), typeUrl: TypeUrl.Cluster });
    const first = await sidecar.next();
    sidecar.ack(TypeUrl.Cluster, first);
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));

    await h.store.createService({ name: 'b', team: 'core', protocol: 'http', port: 8080 }, 'test');
    const a = (await h.store.getService('a'))!.value.spec;
    await h.store.updateService({ ...a, dependencies: [{ service: 'b' }] }, 'test');
    const next = await sidecar.next(WITHIN_MS); // AdsTestClient never reconnects: this is the same stream
    expect(next.typeUrl).toBe(TypeUrl.Cluster);
    expect(next.versionInfo).not.toBe(first.versionInfo);
  });
});

describe('the xDS port ages connections out, and a proxyless client follows to a new connection', () => {
  let h: ControlPlaneHarness;
  let client: XdsClientProcess | undefined;
  const servers: { stop(): Promise<void> }[] = [];
  const opened: string[] = [];

  const register = async (id: string) => {
    const server = await startWhoServer(id);
    servers.push(server);
    const instance = { service: 'd', id, address: '127.0.0.1', port: server.port, platform: 'vm' as const, labels: {} };
    await h.store.registerInstance({ ...instance, locality: { region: 'local', zone: 'z1', subZone: '' } }, 60);
  };

  beforeAll(async () => {
    h = await startControlPlaneHarness(
      // Each new stream gets its first response well within age + grace even on a loaded machine (else grpc-js-xds backs off).
      { TRELLIS_GRPC_MAX_CONNECTION_AGE_MS: 3_000, TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS: 2_000 },
      { onStreamOpen: (stream) => opened.push(stream.nodeId) },
      etcd,
    );
  });
  afterAll(async () => {
    await client?.stop();
    await Promise.all(servers.map((s) => s.stop()));
    await h?.stop();
  });

  it('sends GOAWAY max_age to a connection past the age limit', async () => {
    const { session, goaways } = await openHttp2Session(`http://${h.xdsAddress}`);
    try {
      await eventually('a GOAWAY', () => goaways.length > 0, WITHIN_MS);
      expect(goaways[0]).toEqual({ code: 0, data: 'max_age' });
    } finally {
      session.destroy();
    }
  });

  it('ends an open ADS stream at the age with UNAVAILABLE and the reason, which a grpc-js client reads as such', async () => {
    const sidecar = AdsTestClient.open(h.xdsAddress, 'sotw');
    try {
      sidecar.send({ node: testNode('e', 'e-aged'), typeUrl: TypeUrl.Cluster });
      await sidecar.next(WITHIN_MS);
      // Not the grace's cut, for which grpc-js makes a status up ("Connection dropped", or INTERNAL "Received RST_STREAM with code 0").
      expect(await sidecar.closedWith(WITHIN_MS)).toMatchObject({ code: status.UNAVAILABLE, details: MAX_AGE_REASON });
      const metrics = await (await fetch(`${h.httpUrl}/metrics`)).text();
      expect(Number(/^trellis_control_plane_xds_connections_aged_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    } finally {
      sidecar.close();
    }
  });

  it("sends the connection's GOAWAY before the stream's status, so the client's next stream goes to a new connection", async () => {
    const { session, goaways } = await openHttp2Session(`http://${h.xdsAddress}`);
    try {
      const stream = session.request({
        ':method': 'POST',
        ':path': '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      const message = Buffer.from(
        DiscoveryRequest.encode(DiscoveryRequest.fromPartial({ node: testNode('e', 'e-raw'), typeUrl: TypeUrl.Cluster })).finish(),
      );
      const frame = Buffer.alloc(5 + message.length);
      frame.writeUInt32BE(message.length, 1);
      message.copy(frame, 5);
      stream.write(frame);
      stream.resume();
      const ended = await new Promise<{ trailers: IncomingHttpHeaders; goawaysBefore: number }>((resolve, reject) => {
        stream.once('trailers', (trailers: IncomingHttpHeaders) => resolve({ trailers, goawaysBefore: goaways.length }));
        stream.once('error', reject);
        setTimeout(() => reject(new Error('no status')), WITHIN_MS).unref();
      });
      expect(ended.trailers['grpc-status']).toBe(String(status.UNAVAILABLE));
      expect(decodeURIComponent(String(ended.trailers['grpc-message']))).toBe(MAX_AGE_REASON);
      expect(ended.goawaysBefore).toBeGreaterThan(0);
      expect(goaways[0]).toEqual({ code: 0, data: 'max_age' });
    } finally {
      session.destroy();
    }
  });

  it('a grpc-js-xds client reopens its cut stream on a new connection; its calls never fail and changes still reach it', async () => {
    // c calls d (the etcd, and so the store, is the first describe's: other names).
    await h.store.createService({ name: 'd', team: 'core', protocol: 'grpc', port: 50051 }, 'test');
    await h.store.createService({ name: 'c', team: 'core', protocol: 'grpc', port: 50052, dependencies: [{ service: 'd' }] }, 'test');
    await register('d-1');
    const t0 = Date.now();
    client = await XdsClientProcess.start({ xdsAddress: h.xdsAddress, service: 'c', nodeId: 'c-aging', target: 'd' });
    const firstOk = await client.waitFor('a call reaching d-1', t0, (rs) => rs.find((r) => r.ok && r.instance === 'd-1'));

    // Each stream lives on one connection, which the server cuts after age + grace: three streams, two new connections.
    await eventually('the client to reopen its stream twice', () => opened.filter((id) => id === 'c-aging').length >= 3, WITHIN_MS);
    const since = Date.now();
    await register('d-2');
    await client.waitFor('a call reaching d-2, registered after the reconnects', since, (rs) => rs.find((r) => r.instance === 'd-2'));
    expect(client.results.filter((r) => r.t >= firstOk && !r.ok)).toEqual([]);
  });
});
