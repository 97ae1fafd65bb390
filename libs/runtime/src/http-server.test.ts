import { Agent, IncomingMessage, request, ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import express from 'express';
import { postJson, recordRequestPrototypes, socketClosed } from '@trellis/testing';
import { closeHttpServer, listenHttp } from './http-server';

/** A GET through `agent` that resolves with the status, or the error when the connection is cut. */
function get(port: number, path: string, agent?: Agent): Promise<number | Error> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', resolve);
    req.end();
  });
}

describe('listenHttp', () => {
  it('reports the bound port and rejects a port already taken', async () => {
    const first = await listenHttp((_req, res) => res.end('ok'), '127.0.0.1', 0);
    try {
      expect(first.port).toBeGreaterThan(0);
      expect(await get(first.port, '/')).toBe(200);
      await expect(listenHttp((_req, res) => res.end(), '127.0.0.1', first.port)).rejects.toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      await closeHttpServer(first.server, 1_000);
    }
  });
});

describe('listenHttp with an express app', () => {
  it("makes each request and response with the app's own prototypes, so express has none to change, and the app answers as before", async () => {
    const app = express();
    app.use(express.json());
    app.post('/things/:id', (req, res) => {
      res
        .status(201)
        .set('x-seen', String(req.get('x-sent')))
        .json({ id: req.params.id, body: req.body as unknown });
    });
    const { server, port } = await listenHttp(app, '127.0.0.1', 0);
    const prototypes = recordRequestPrototypes(server);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 2; i++) {
        const answer = await postJson(
          request,
          { host: '127.0.0.1', port, path: `/things/t${i}`, agent, headers: { 'x-sent': `v${i}` } },
          { n: i },
          'x-seen',
        );
        expect(answer).toEqual({ status: 201, header: `v${i}`, body: JSON.stringify({ id: `t${i}`, body: { n: i } }) });
      }
      expect(prototypes).toHaveLength(2);
      for (const { request: requestPrototype, response: responsePrototype } of prototypes) {
        expect(requestPrototype).toBe(app.request);
        expect(responsePrototype).toBe(app.response);
      }
    } finally {
      agent.destroy();
      await closeHttpServer(server, 1_000);
    }
  });

  it("gives any other handler Node's own request and response", async () => {
    const seen: object[] = [];
    const { server, port } = await listenHttp(
      (req, res) => {
        seen.push(Object.getPrototypeOf(req) as object, Object.getPrototypeOf(res) as object);
        res.end('ok');
      },
      '127.0.0.1',
      0,
    );
    try {
      expect(await get(port, '/')).toBe(200);
      expect(seen).toHaveLength(2);
      expect(seen[0]).toBe(IncomingMessage.prototype);
      expect(seen[1]).toBe(ServerResponse.prototype);
    } finally {
      await closeHttpServer(server, 1_000);
    }
  });
});

describe('listenHttp against connections that send nothing', () => {
  const open = (port: number) =>
    new Promise<Socket>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(socket));
      socket.once('error', reject);
    });

  it('attack: closes a connection that never sends a byte (no request, so no request timeout sees it); serves others meanwhile', async () => {
    const { server, port } = await listenHttp((_req, res) => res.end('ok'), '127.0.0.1', 0, { headersTimeoutMs: 1_000 });
    try {
      const silent = await open(port);
      const gone = socketClosed(silent);
      expect(await get(port, '/')).toBe(200);
      await gone;
    } finally {
      await closeHttpServer(server, 1_000);
    }
  });

  it('leaves a request whose handler is slower than the headers timeout, and the keep-alive connection after it, alone', async () => {
    const { server, port } = await listenHttp(
      (req, res) => {
        if (req.url === '/slow') setTimeout(() => res.end('late'), 2_500);
        else res.end('ok');
      },
      '127.0.0.1',
      0,
      { headersTimeoutMs: 1_000 },
    );
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      let sockets = 0;
      server.on('connection', () => sockets++);
      expect(await get(port, '/slow', agent)).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 2_500)); // idle longer than the headers timeout
      expect(await get(port, '/', agent)).toBe(200);
      expect(sockets).toBe(1); // the same keep-alive connection served both
    } finally {
      agent.destroy();
      await closeHttpServer(server, 1_000);
    }
  });
});

describe('closeHttpServer', () => {
  it('lets an in-flight request finish, closes idle keep-alive sockets, and stops accepting', async () => {
    let release: () => void = () => undefined;
    let arrived: () => void = () => undefined;
    const inFlight = new Promise<void>((resolve) => (arrived = resolve));
    const { server, port } = await listenHttp(
      (req, res) => {
        if (req.url === '/slow') {
          arrived();
          release = () => res.end('done');
        } else res.end('fast');
      },
      '127.0.0.1',
      0,
    );
    const agent = new Agent({ keepAlive: true });
    try {
      expect(await get(port, '/fast', agent)).toBe(200); // leaves an idle keep-alive socket behind
      const slow = get(port, '/slow');
      await inFlight;
      // A grace far beyond the test's timeout: only a clean drain lets this resolve.
      const closed = closeHttpServer(server, 10 * 60_000);
      release();
      expect(await slow).toBe(200);
      await closed;
      expect(await get(port, '/fast')).toMatchObject({ code: 'ECONNREFUSED' });
    } finally {
      agent.destroy();
    }
  });

  it('cuts a request still running when the grace period ends', async () => {
    const { server, port } = await listenHttp(() => undefined, '127.0.0.1', 0); // never answers
    let arrived: () => void = () => undefined;
    server.once('request', () => arrived());
    const hung = get(port, '/hang');
    await new Promise<void>((resolve) => (arrived = resolve));
    await closeHttpServer(server, 50);
    expect(await hung).toMatchObject({ code: 'ECONNRESET' });
  });

  it('is a no-op on a server that is not listening', async () => {
    const { server } = await listenHttp(() => undefined, '127.0.0.1', 0);
    await closeHttpServer(server, 1_000);
    await closeHttpServer(server, 1_000);
  });
});
