// The attacks a TLS gRPC port must survive, performed against a real grpc-js server bound by
// bindGrpcServer: connections that never finish their handshake (silent, or trickling a
// ClientHello), that finish it and never send the HTTP/2 preface, and a flood of either.
// Each is closed by the server well before Node's default 120 s; a real mTLS client is served meanwhile.
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { credentials, makeGenericClientConstructor, Server, ServerCredentials, type ServiceError } from '@grpc/grpc-js';
import { createTestPki, eventually, socketClosed, type TestPki, rawBytesMethod } from '@trellis/testing';
import type { TlsRefusal } from '../tls-guard';
import { lookup } from 'node:dns/promises';
import { addressesOf, bindGrpcServer, pendingTlsConnections, stopGrpcServer, type GrpcTlsLimits } from './grpc-server';
import { HTTP2_CLIENT_MAGIC } from './http2-preface';

jest.setTimeout(120_000);

// The peer's certificate as the handler sees it (what authz and the control plane read the caller's identity from).
const WHO = rawBytesMethod('/test.Who/Who');
const WhoClient = makeGenericClientConstructor({ who: WHO }, 'test.Who');
type WhoClientInstance = InstanceType<typeof WhoClient> & {
  who(request: Buffer, callback: (err: ServiceError | null, response: Buffer) => void): void;
};

/** Generous against a loaded machine, and still far below Node's 120 s. */
const LIMITS: GrpcTlsLimits = { handshakeTimeoutMs: 5_000, prefaceTimeoutMs: 5_000, maxPendingConnections: 4 };
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
}

async function start(limits: GrpcTlsLimits = LIMITS, host = '127.0.0.1'): Promise<Started> {
  const server = new Server();
  server.addService(
    { who: WHO },
    {
      who: (call: { getAuthContext(): { sslPeerCertificate?: { subjectaltname?: string } } }, callback: (e: null, r: Buffer) => void) =>
        callback(null, Buffer.from(call.getAuthContext().sslPeerCertificate?.subjectaltname ?? 'anonymous')),
    },
  );
  const refusals: TlsRefusal[] = [];
  const tls = ServerCredentials.createSsl(pki.ca, [{ cert_chain: pki.server.cert, private_key: pki.server.key }], true);
  const port = await bindGrpcServer(server, host, 0, tls, { tlsLimits: limits, onTlsRefused: (reason) => refusals.push(reason) });
  return { server, port, refusals };
}

function mtlsClient(port: number, address = '127.0.0.1'): WhoClientInstance {
  return new WhoClient(
    `${address.includes(':') ? `[${address}]` : address}:${port}`,
    credentials.createSsl(pki.ca, pki.client('a').key, pki.client('a').cert),
    // A fresh connection per client, so each one proves the port still accepts; the certificate names localhost (not an IP: RFC 6066).
    { 'grpc.use_local_subchannel_pool': 1, 'grpc.ssl_target_name_override': 'localhost' },
  ) as WhoClientInstance;
}

const who = (client: WhoClientInstance) =>
  new Promise<string>((resolve, reject) =>
    client.who(Buffer.alloc(0), (err, response) => (err ? reject(err) : resolve(response.toString()))),
  );

const closed = (socket: Socket, withinMs = CLOSED_WITHIN_MS) => socketClosed(socket, withinMs);

const opened = (socket: Socket) =>
  new Promise<Socket>((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
const rawConnection = (port: number) => opened(connectTcp(port, '127.0.0.1'));

/** A connection through its mTLS handshake (ALPN h2), which then sends `first` and nothing more. */
function handshakenConnection(port: number, first?: Buffer): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connectTls({
      host: '127.0.0.1',
      port,
      ca: pki.ca,
      cert: pki.client('a').cert,
      key: pki.client('a').key,
      ALPNProtocols: ['h2'],
    });
    socket.once('secureConnect', () => {
      if (first) socket.write(first);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

describe('a TLS gRPC port bound by bindGrpcServer', () => {
  const stops: Array<() => Promise<void>> = [];
  const clients: WhoClientInstance[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    for (const stop of stops.splice(0)) await stop();
  });
  const started = async (limits?: GrpcTlsLimits) => {
    const s = await start(limits);
    stops.push(() => stopGrpcServer(s.server, 1_000));
    return s;
  };
  const client = (port: number) => {
    const c = mtlsClient(port);
    clients.push(c);
    return c;
  };

  it('serves an mTLS client, whose certificate the handler sees', async () => {
    const { port, server } = await started();
    expect(await who(client(port))).toBe('URI:spiffe://trellis.local/svc/a');
    expect(pendingTlsConnections(server)).toBe(0);
  });

  it('closes a connection that never starts its handshake, and serves a real client meanwhile', async () => {
    const { port, refusals } = await started();
    const silent = await rawConnection(port);
    const gone = closed(silent);
    expect(await who(client(port))).toBe('URI:spiffe://trellis.local/svc/a');
    await gone;
    expect(refusals).toEqual(['handshake_timeout']);
  });

  it('closes a connection that trickles its ClientHello, though each byte arrives within the deadline', async () => {
    const { port, refusals } = await started();
    const trickling = await rawConnection(port);
    // A TLS record header announcing a 512-byte handshake message, then a byte every 200 ms: never idle,
    // so only a deadline counted from accept ends it.
    trickling.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]));
    const drip = setInterval(() => trickling.writable && trickling.write(Buffer.from([0x01])), 200);
    try {
      await closed(trickling);
    } finally {
      clearInterval(drip);
    }
    expect(refusals).toEqual(['handshake_timeout']);
  });

  it('closes a connection that finishes its handshake and never sends the HTTP/2 preface', async () => {
    const { port, refusals } = await started();
    const quiet = await handshakenConnection(port);
    const gone = closed(quiet);
    expect(await who(client(port))).toBe('URI:spiffe://trellis.local/svc/a');
    await gone;
    expect(refusals).toEqual(['preface_timeout']);
  });

  it('closes a connection that sends the magic and never its SETTINGS', async () => {
    const { port, refusals } = await started();
    await closed(await handshakenConnection(port, HTTP2_CLIENT_MAGIC));
    expect(refusals).toEqual(['preface_timeout']);
  });

  it('closes new connections at accept while the cap of pending ones is reached; served connections do not count', async () => {
    // Deadlines long enough that the stalled connections outlive the checks below.
    const { port, server, refusals } = await started({ handshakeTimeoutMs: 30_000, prefaceTimeoutMs: 30_000, maxPendingConnections: 3 });
    const before = client(port);
    expect(await who(before)).toBe('URI:spiffe://trellis.local/svc/a'); // connected before the flood

    const stalled = await Promise.all([rawConnection(port), rawConnection(port), handshakenConnection(port)]);
    await eventually('three pending connections', () => pendingTlsConnections(server) === 3, CLOSED_WITHIN_MS);
    const extra = await rawConnection(port);
    await closed(extra);
    expect(refusals).toEqual(['too_many_pending']);
    expect(stalled.every((socket) => !socket.destroyed)).toBe(true);
    expect(await who(before)).toBe('URI:spiffe://trellis.local/svc/a'); // its connection is through: not pending

    for (const socket of stalled) socket.destroy(); // the flood ends: the port accepts again
    await eventually('the pending connections to be released', () => pendingTlsConnections(server) === 0, CLOSED_WITHIN_MS);
    expect(await who(client(port))).toBe('URI:spiffe://trellis.local/svc/a');
  });

  it('closes a failed handshake (no client certificate) and counts it', async () => {
    const { port, refusals } = await started();
    const anonymous = connectTls({ host: '127.0.0.1', port, ca: pki.ca, ALPNProtocols: ['h2'] });
    await closed(anonymous);
    await eventually('the refusal to be counted', () => refusals.length > 0, CLOSED_WITHIN_MS);
    expect(refusals).toEqual(['handshake_failed']);
  });

  it('stops accepting, and closes pending connections, when the server stops', async () => {
    const { port, server } = await start({ ...LIMITS, handshakeTimeoutMs: 60_000 });
    const pending = await rawConnection(port);
    await eventually('the pending connection', () => pendingTlsConnections(server) === 1, CLOSED_WITHIN_MS);
    const gone = closed(pending, 10_000);
    await stopGrpcServer(server, 1_000);
    await gone;
    await expect(rawConnection(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});

describe('the addresses a guarded TLS port listens on', () => {
  it('takes an IP literal as it is, with or without brackets, and every distinct address of a name', async () => {
    const resolve = async () => [
      { address: '127.0.0.1', family: 4 },
      { address: '::1', family: 6 },
      { address: '127.0.0.1', family: 4 },
    ];
    expect(await addressesOf('0.0.0.0', resolve)).toEqual(['0.0.0.0']);
    expect(await addressesOf('[::1]', resolve)).toEqual(['::1']);
    expect(await addressesOf('::', resolve)).toEqual(['::']);
    expect(await addressesOf('localhost', resolve)).toEqual(['127.0.0.1', '::1']);
  });

  it('serves mTLS on every address a host name resolves to, as grpc-js binds them (localhost)', async () => {
    const { server, port } = await start(LIMITS, 'localhost');
    try {
      for (const { address } of await lookup('localhost', { all: true })) {
        const client = mtlsClient(port, address);
        try {
          expect(await who(client)).toBe('URI:spiffe://trellis.local/svc/a');
        } finally {
          client.close();
        }
      }
    } finally {
      await stopGrpcServer(server, 1_000);
    }
  });
});
