// A slow-loris client for attack tests: many sockets that each send a request a few
// bytes at a time and never finish it, as a resource-exhaustion attacker would.
import { connect, type Socket } from 'node:net';

export interface SlowLoris {
  /** Sockets the server has not closed yet. */
  readonly open: number;
  /** What the server answered on the sockets it closed (first line of each reply). */
  readonly replies: string[];
  /** Resolves once the server has closed every socket; rejects after `timeoutMs`. */
  allClosed(timeoutMs?: number): Promise<void>;
  /** Closes whatever is still open (from our side). */
  stop(): void;
}

export interface SlowLorisOptions {
  port: number;
  host?: string;
  sockets: number;
  /**
   * `headers`: header lines trickle and never end; `body`: headers complete, the announced body trickles;
   * `tls-handshake`: a TLS record announcing 512 bytes of ClientHello trickles (a TLS port, before any HTTP).
   */
  mode: 'headers' | 'body' | 'tls-handshake';
  /** The request's path: for `body`, one whose handler reads the body (default /healthz). */
  path?: string;
  /** For `body`: the Content-Type announced (default a form); the body announced is 4,000 bytes. */
  contentType?: string;
  /** Between two trickled bits on each socket (default 500 ms). */
  intervalMs?: number;
}

export async function startSlowLoris(opts: SlowLorisOptions): Promise<SlowLoris> {
  const host = opts.host ?? '127.0.0.1';
  const interval = opts.intervalMs ?? 500;
  const sockets = new Set<Socket>();
  const replies: string[] = [];
  const closedWaiters: (() => void)[] = [];
  const path = opts.path ?? '/healthz';
  const start =
    opts.mode === 'headers'
      ? `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n`
      : opts.mode === 'body'
        ? `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: ${opts.contentType ?? 'application/x-www-form-urlencoded'}\r\nContent-Length: 4000\r\n\r\n`
        : // A handshake record (type 22, TLS 1.0 framing) of 512 bytes: TLS reads nothing until the whole record is in.
          Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]);
  const trickle = (i: number, n: number): string | Buffer =>
    opts.mode === 'headers' ? `X-Slow-${i}-${n}: 1\r\n` : opts.mode === 'body' ? 'a' : Buffer.from([0x00]);

  await Promise.all(
    Array.from(
      { length: opts.sockets },
      (_, i) =>
        new Promise<void>((resolve, reject) => {
          let timer: NodeJS.Timeout | undefined;
          let n = 0;
          const socket = connect(opts.port, host, () => {
            socket.write(start);
            // Trickling starts after the request line: a socket still connecting is writable and
            // buffers, so on a loaded machine an earlier tick would send its bytes before it (a
            // malformed request the server rightly answers 400, not the slow one under test).
            timer = setInterval(() => {
              if (socket.writable) socket.write(trickle(i, n++));
            }, interval);
            resolve();
          });
          sockets.add(socket);
          let reply = '';
          socket.on('data', (d: Buffer) => (reply += d.toString('latin1')));
          socket.on('error', () => undefined); // a reset is one way of being closed
          socket.once('error', reject);
          socket.on('close', () => {
            clearInterval(timer);
            sockets.delete(socket);
            replies.push(reply.split('\r\n')[0] ?? '');
            if (sockets.size === 0) for (const w of closedWaiters.splice(0)) w();
          });
        }),
    ),
  );

  return {
    get open() {
      return sockets.size;
    },
    replies,
    allClosed(timeoutMs = 60_000) {
      if (sockets.size === 0) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${sockets.size} slow sockets still open after ${timeoutMs} ms`)), timeoutMs);
        closedWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
    stop() {
      for (const socket of sockets) socket.destroy();
      // Their close events settle any allClosed() wait (and clear its timer).
    },
  };
}
