// The HTTP side of every app: listen, report the bound port, close gracefully.
import { createServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';

export interface ListeningHttpServer {
  server: Server;
  /** The bound port (the real one when asked for port 0). */
  port: number;
}

/** How long a client may take to send a request (see httpLimitsEnv). */
export interface HttpLimits {
  /** Until the request's headers are complete, counted from its first byte (or the connection's start). */
  headersTimeoutMs?: number;
  /** Until the whole request (headers and body) has arrived. */
  requestTimeoutMs?: number;
}

export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/**
 * Listens on `host:port`; rejects when the port cannot be bound. A client slower than
 * `limits` gets 408 and its socket is closed: open sockets cost the server, so one
 * that trickles its headers (slow loris) must not hold one for minutes.
 */
export async function listenHttp(
  handler: RequestListener,
  host: string,
  port: number,
  limits: HttpLimits = {},
): Promise<ListeningHttpServer> {
  const headersTimeout = limits.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
  const server = createServer(
    {
      headersTimeout,
      requestTimeout: Math.max(limits.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, headersTimeout),
      // Node checks the two timeouts on this interval (30 s by default, which would let a slow socket live that much longer).
      connectionsCheckingInterval: Math.min(1_000, headersTimeout),
    },
    handler,
  );
  // Outlive the idle timeouts of scrapers and load balancers, so they never reuse a socket we just closed.
  // (An idle keep-alive socket is this timeout's business; headersTimeout counts from a request's first byte.)
  server.keepAliveTimeout = 65_000;
  closeSilentConnections(server, headersTimeout);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
}

/**
 * Node starts headersTimeout and requestTimeout at a request's first byte, so a connection that
 * sends nothing at all is no request and is held until the client leaves (a silent slow loris).
 * Until its first request arrives, each connection gets an idle timeout of `ms` (Node closes a
 * socket whose timeout fires and nobody handles it); from then on the request timeouts and
 * keepAliveTimeout govern it, as before. On an HTTPS server it starts at the handshake's end.
 */
export function closeSilentConnections(server: Server | HttpsServer, ms: number): void {
  const firstRequestSeen = new WeakSet<Socket>();
  server.on(server instanceof TlsServer ? 'secureConnection' : 'connection', (socket: Socket) => socket.setTimeout(ms));
  server.on('request', (req: IncomingMessage) => {
    if (firstRequestSeen.has(req.socket)) return;
    firstRequestSeen.add(req.socket);
    req.socket.setTimeout(0);
  });
}

/** Stops accepting, lets in-flight requests finish for up to `graceMs`, then cuts what is left. */
export function closeHttpServer(server: Server, graceMs: number): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}
