// keepStreamsById swaps a registry inside node:http2's session state: a real HTTP/2 server and
// client check that Node still keeps it where keepStreamsById looks, and that a session
// with the swapped registry still opens, serves, cancels and tears down its streams.
import { once } from 'node:events';
import { connect, createServer, type ClientHttp2Session, type Http2Server, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createLogger } from '@trellis/runtime';
import { keepStreamsById, keepStreamsByIdReporting, StreamsById, streamsOf, type StreamsKeptIn } from './session-streams';

describe('StreamsById', () => {
  it('gets, sets and deletes by id, counting what it holds', () => {
    const streams = new StreamsById<string>();
    expect(streams.set(1, 'a').set(3, 'b').set(3, 'b2').size).toBe(2);
    expect(streams.get(3)).toBe('b2');
    expect(streams.get(5)).toBeUndefined();
    expect(streams.delete(1)).toBe(true);
    expect(streams.delete(1)).toBe(false);
    expect(streams.size).toBe(1);
  });

  it('says when the last stream leaves, each time it does', () => {
    const streams = new StreamsById<string>();
    let emptied = 0;
    streams.onEmpty = () => (emptied += 1);
    streams.set(1, 'a').set(3, 'b');
    streams.delete(1);
    streams.delete(7);
    expect(emptied).toBe(0);
    streams.delete(3);
    expect(emptied).toBe(1);
    streams.set(5, 'c');
    streams.delete(5);
    expect(emptied).toBe(2);
  });

  it('visits in id order and, as a Map does, skips a stream an earlier visit deleted', () => {
    const streams = new StreamsById<string>();
    streams.set(5, 'c').set(1, 'a').set(3, 'b');
    const visited: number[] = [];
    streams.forEach((_stream, id, registry) => {
      visited.push(id);
      registry.delete(id);
      if (id === 1) registry.delete(3);
    });
    expect(visited).toEqual([1, 5]);
    expect(streams.size).toBe(0);
  });
});

describe('keepStreamsById on a node:http2 session', () => {
  let server: Http2Server;
  let port: number;
  const sessions: Http2Session[] = [];
  const held: ServerHttp2Stream[] = [];
  const clients: ClientHttp2Session[] = [];

  beforeEach(async () => {
    sessions.length = 0;
    held.length = 0;
    server = createServer();
    server.on('session', (session) => sessions.push(session));
    server.on('stream', (stream, headers) => {
      // The first stream swaps the registry while it is in it, as authz's first Check on a connection does.
      if (!(streamsOf(stream.session!) instanceof StreamsById)) expect(keepStreamsById(stream.session!)).toBeInstanceOf(StreamsById);
      if (headers[':path'] === '/hold') held.push(stream);
      else stream.respond({ ':status': 200 }, { endStream: true });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  const client = () => {
    const c = connect(`http://127.0.0.1:${port}`);
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };
  const request = async (c: ClientHttp2Session, path = '/'): Promise<number> => {
    const stream = c.request({ ':path': path });
    stream.resume();
    const [headers] = (await once(stream, 'response')) as [Record<string, number>];
    await once(stream, 'close');
    return headers[':status']!;
  };

  it('finds the registry where Node keeps it, with the streams open at the swap', async () => {
    const c = client();
    const statuses = await Promise.all(Array.from({ length: 50 }, () => request(c)));
    expect(statuses.every((status) => status === 200)).toBe(true);
    expect(sessions).toHaveLength(1);
    const registry = streamsOf(sessions[0]!);
    expect(registry).toBeInstanceOf(StreamsById);
    // Every stream left it once closed.
    for (let i = 0; i < 100 && (registry as StreamsById<unknown>).size > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect((registry as StreamsById<unknown>).size).toBe(0);
  });

  it('serves many streams at once, cancels one, and destroys the open ones when the session closes', async () => {
    const c = client();
    const holding = Array.from({ length: 20 }, () => {
      const stream = c.request({ ':path': '/hold' });
      stream.on('error', () => undefined);
      return stream;
    });
    for (let i = 0; i < 200 && held.length < 20; i++) await new Promise((r) => setTimeout(r, 10));
    expect(held).toHaveLength(20);
    const registry = streamsOf(sessions[0]!) as StreamsById<unknown>;
    expect(registry.size).toBe(20);
    // One canceled by the client leaves the registry; the others are still answered on the same session.
    const canceled = once(held[0]!, 'close');
    holding[0]!.close();
    await canceled;
    expect(registry.size).toBe(19);
    expect(await request(c)).toBe(200);
    // The server's side of a session torn down with streams open: each one closed, none left behind.
    const closed = held.slice(1).map((stream) => once(stream, 'close'));
    sessions[0]!.destroy();
    await Promise.all(closed);
    expect(held.slice(1).every((stream) => stream.destroyed)).toBe(true);
    expect(registry.size).toBe(0);
  });

  it('changes nothing on an object that is not laid out as a session', () => {
    expect(keepStreamsById({} as Http2Session)).toBeUndefined();
  });
});

describe('keepStreamsByIdReporting', () => {
  it('reports each connection by_id on a real session, node_map where the layout differs, and warns once per process naming the Node version', async () => {
    const logs: string[] = [];
    const logger = createLogger('authz', 'info', { write: (line: string) => void logs.push(line) });
    const kept: StreamsKeptIn[] = [];
    const keep = keepStreamsByIdReporting(logger, (where) => kept.push(where));

    const server = createServer();
    server.on('stream', (stream) => {
      keep(stream.session!);
      stream.respond({ ':status': 200 }, { endStream: true });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const answered = client.request({ ':path': '/' });
      answered.resume();
      await once(answered, 'close');
    } finally {
      client.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
    expect(kept).toEqual(['by_id']);
    expect(logs).toEqual([]);

    // Node laying sessions out otherwise (another major): authz serves on, each connection counted, one warning.
    keep({} as Http2Session);
    keep({} as Http2Session);
    expect(kept).toEqual(['by_id', 'node_map', 'node_map']);
    expect(logs.map((line) => JSON.parse(line) as Record<string, unknown>)).toEqual([
      expect.objectContaining({
        level: 40,
        nodeVersion: process.version,
        msg: expect.stringMatching(/not laid out as session-streams.ts expects/),
      }),
    ]);
  });
});
