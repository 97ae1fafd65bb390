// The attacks on a proxyless server's TLS, performed against limitProxylessTls on a real grpc-js
// server fed the way an XdsServer feeds it: a TCP listener of its own hands each connection to a
// connection injector whose credentials terminate TLS (with interceptors around them, as each filter
// chain has). Silent connections, ones through the handshake without the HTTP/2 preface, and a flood
// are closed long before Node's 120 s while an mTLS client is served. Against a real XdsServer with
// the control plane's TLS: apps/control-plane/test/proxyless-mtls-e2e.test.ts.
import { createServer, connect as connectTcp, type Server as NetServer, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { credentials, experimental, makeGenericClientConstructor, Server, ServerCredentials, type ServiceError } from '@grpc/grpc-js';
import { createTestPki, eventually, socketClosed, type TestPki, rawBytesMethod } from '@trellis/testing';
import { limitProxylessTls, pendingProxylessTlsConnections, type ProxylessTlsLimits, type TlsRefusal } from '../src';

jest.setTimeout(120_000);

const WHO = rawBytesMethod('/test.Who/Who');
const WhoClient = makeGenericClientConstructor({ who: WHO }, 'test.Who');
type WhoClientInstance = InstanceType<typeof WhoClient> & {
  who(request: Buffer, callback: (err: ServiceError | null, response: Buffer) => void): void;
};

/** Generous against a loaded machine, and still far below Node's 120 s. */
const LIMITS: ProxylessTlsLimits = { handshakeTimeoutMs: 3_000, prefaceTimeoutMs: 3_000, maxPendingConnections: 4 };
const CLOSED_WITHIN_MS = 60_000;

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});
afterAll(() => pki?.remove());

interface Started {
  server: Server;
  port: number;
  refusals: TlsRefusal[];
  stop(): Promise<void>;
}

async function start(limits: ProxylessTlsLimits = LIMITS): Promise<Started> {
  const refusals: TlsRefusal[] = [];
  const server = limitProxylessTls(new Server(), { tlsLimits: limits, onTlsRefused: (reason) => refusals.push(reason) });
  server.addService(
    { who: WHO },
    {
      who: (call: { getAuthContext(): { sslPeerCertificate?: { subjectaltname?: string } } }, callback: (e: null, r: Buffer) => void) =>
        callback(null, Buffer.from(call.getAuthContext().sslPeerCertificate?.subjectaltname ?? 'anonymous')),
    },
  );
  const tls = ServerCredentials.createSsl(pki.ca, [{ cert_chain: pki.server.cert, private_key: pki.server.key }], true);
  const injector = server.createConnectionInjector(experimental.createServerCredentialsWithInterceptors(tls, []));
  const tcp: NetServer = createServer((socket) => injector.injectConnection(socket));
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  const port = (tcp.address() as { port: number }).port;
  return {
    server,
    port,
    refusals,
    stop: async () => {
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
      injector.destroy();
      server.forceShutdown();
    },
  };
}

function mtlsClient(port: number): WhoClientInstance {
  return new WhoClient(
    `127.0.0.1:${port}`,
    credentials.createSsl(pki.ca, pki.client('a').key, pki.client('a').cert),
    // A fresh connection per client; the certificate names localhost (an IP as the TLS server name is DEP0123).
    { 'grpc.use_local_subchannel_pool': 1, 'grpc.ssl_target_name_override': 'localhost' },
  ) as WhoClientInstance;
}

const who = (client: WhoClientInstance) =>
  new Promise<string>((resolve, reject) =>
    client.who(Buffer.alloc(0), (err, response) => (err ? reject(err) : resolve(response.toString()))),
  );

const rawConnection = (port: number) =>
  new Promise<Socket>((resolve, reject) => {
    const socket = connectTcp(port, '127.0.0.1');
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });

/** A connection through its mTLS handshake (ALPN h2) that then sends nothing. */
const handshakenConnection = (port: number) =>
  new Promise<Socket>((resolve, reject) => {
    const socket = connectTls({
      host: '127.0.0.1',
      port,
      ca: pki.ca,
      cert: pki.client('a').cert,
      key: pki.client('a').key,
      ALPNProtocols: ['h2'],
    });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });

describe('limitProxylessTls', () => {
  const stops: Array<() => Promise<void>> = [];
  const clients: WhoClientInstance[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    for (const stop of stops.splice(0)) await stop();
  });
  const started = async (limits?: ProxylessTlsLimits) => {
    const s = await start(limits);
    stops.push(s.stop);
    return s;
  };
  const client = (port: number) => {
    const c = mtlsClient(port);
    clients.push(c);
    return c;
  };

  it('closes silent TCP connections after the handshake deadline, and serves an mTLS client meanwhile', async () => {
    const { port, server, refusals } = await started();
    const silent = await Promise.all([rawConnection(port), rawConnection(port)]);
    const gone = Promise.all(silent.map((socket) => socketClosed(socket, CLOSED_WITHIN_MS)));
    expect(await who(client(port))).toBe('URI:spiffe://trellis.local/svc/a');
    await gone;
    expect(refusals).toEqual(['handshake_timeout', 'handshake_timeout']);
    await eventually('nothing pending', () => pendingProxylessTlsConnections(server) === 0, CLOSED_WITHIN_MS);
  });

  it('closes a connection through its handshake that never sends the HTTP/2 preface', async () => {
    const { port, refusals } = await started();
    const quiet = await handshakenConnection(port);
    const gone = socketClosed(quiet, CLOSED_WITHIN_MS);
    expect(await who(client(port))).toBe('URI:spiffe://trellis.local/svc/a');
    await gone;
    expect(refusals).toEqual(['preface_timeout']);
  });

  it('closes new connections at accept while the cap of pending ones is reached; served connections do not count', async () => {
    const { port, server, refusals } = await started({ handshakeTimeoutMs: 30_000, prefaceTimeoutMs: 30_000, maxPendingConnections: 3 });
    const before = client(port);
    expect(await who(before)).toBe('URI:spiffe://trellis.local/svc/a');
    const stalled = await Promise.all([rawConnection(port), rawConnection(port), handshakenConnection(port)]);
    await eventually('three pending connections', () => pendingProxylessTlsConnections(server) === 3, CLOSED_WITHIN_MS);
    await socketClosed(await rawConnection(port), CLOSED_WITHIN_MS);
    expect(refusals).toEqual(['too_many_pending']);
    expect(stalled.every((socket) => !socket.destroyed)).toBe(true);
    expect(await who(before)).toBe('URI:spiffe://trellis.local/svc/a');
    for (const socket of stalled) socket.destroy();
    await eventually('the pending connections to be released', () => pendingProxylessTlsConnections(server) === 0, CLOSED_WITHIN_MS);
    expect(await who(client(port))).toBe('URI:spiffe://trellis.local/svc/a');
  });
});

describe('limitProxylessTls defaults', () => {
  it('reads the TRELLIS_TLS_* variables, and refuses a value out of bounds naming it', () => {
    const saved = process.env['TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS'];
    try {
      process.env['TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS'] = '500';
      expect(() => limitProxylessTls(new Server())).toThrow(/TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS/);
    } finally {
      if (saved === undefined) delete process.env['TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS'];
      else process.env['TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS'] = saved;
    }
  });
});
