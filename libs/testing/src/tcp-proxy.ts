// A loopback TCP proxy that can cut a client off from a server without
// stopping it: pause() drops every connection and refuses new ones. Works
// against shared servers too, where stop()/start() are unavailable.
import { connect, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  /** `127.0.0.1:<port>` to point clients at. */
  readonly host: string;
  readonly port: number;
  readonly paused: boolean;
  /** While set, what the server sends is read and thrown away: a network that loses the answers, not the requests. */
  dropReplies: boolean;
  /** Destroys every open connection and drops new ones until resume(). */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let paused = false;
  let dropReplies = false;
  const server = createServer((downstream) => {
    if (paused) {
      downstream.destroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    for (const s of [downstream, upstream]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => {
        downstream.destroy();
        upstream.destroy();
      });
    }
    downstream.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      if (!dropReplies) downstream.write(chunk);
    });
    upstream.once('end', () => downstream.end());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no TCP address');
  return {
    host: '127.0.0.1',
    port: address.port,
    get paused() {
      return paused;
    },
    get dropReplies() {
      return dropReplies;
    },
    set dropReplies(drop: boolean) {
      dropReplies = drop;
    },
    pause() {
      paused = true;
      for (const s of sockets) s.destroy();
    },
    resume() {
      paused = false;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
