// The HTTP side of every app: listen, report the bound port, close gracefully.
import { createServer, IncomingMessage, ServerResponse, type RequestListener, type Server, type ServerOptions } from 'node:http';
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
  const options = httpServerOptions(handler, limits);
  const server = createServer(options, handler);
  // Outlive the idle timeouts of scrapers and load balancers, so they never reuse a socket we just closed.
  // (An idle keep-alive socket is this timeout's business; headersTimeout counts from a request's first byte.)
  server.keepAliveTimeout = 65_000;
  closeSilentConnections(server, options.headersTimeout);
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
 * The options of every HTTP server an app runs, plain (listenHttp) or HTTPS (authz's mTLS port): the
 * slow-client limits, and for an express app request and response classes of its own prototypes.
 */
export function httpServerOptions(
  handler: RequestListener,
  limits: HttpLimits = {},
): ServerOptions & { headersTimeout: number; requestTimeout: number } {
  const headersTimeout = limits.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
  return {
    headersTimeout,
    requestTimeout: Math.max(limits.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, headersTimeout),
    // Node checks the two timeouts on this interval (30 s by default, which would let a slow socket live that much longer).
    connectionsCheckingInterval: Math.min(1_000, headersTimeout),
    ...messageClassesOf(handler),
  };
}

/**
 * Request and response classes whose objects start with `handler`'s own prototypes when it
 * has them (an express app's `app.request` and `app.response`), else none (Node's own).
 * express moves every request and response onto its app's prototypes with
 * `Object.setPrototypeOf`; V8 then gives each a new hidden class, and the property accesses
 * of everything after (Node's HTTP code, express, our middleware) meet objects of shapes
 * they have not seen: ~65 µs more CPU a request than the same app with these classes (an
 * express micro-benchmark; the registry's writes moved ~0.2× of an etcd put, 2026-12-07).
 * Made with the prototype already in place, express's `setPrototypeOf` finds nothing to change.
 */
function messageClassesOf(handler: RequestListener): Pick<ServerOptions, 'IncomingMessage' | 'ServerResponse'> {
  const { request, response } = handler as { request?: unknown; response?: unknown };
  if (!inheritsFrom(request, IncomingMessage.prototype) || !inheritsFrom(response, ServerResponse.prototype)) return {};
  // Node's IncomingMessage and ServerResponse are constructor functions (not classes) that
  // initialise `this`, as Node's own subclasses call them. (`Reflect.construct` with another
  // new.target makes the same objects, but measured ~100 µs a request slower than either.)
  const NodeRequest = IncomingMessage as unknown as (this: IncomingMessage, socket: Socket) => void;
  const NodeResponse = ServerResponse as unknown as (this: ServerResponse, req: IncomingMessage, options?: unknown) => void;
  function AppRequest(this: IncomingMessage, socket: Socket): void {
    NodeRequest.call(this, socket);
  }
  function AppResponse(this: ServerResponse, req: IncomingMessage, options?: unknown): void {
    NodeResponse.call(this, req, options);
  }
  AppRequest.prototype = request;
  AppResponse.prototype = response;
  return {
    IncomingMessage: AppRequest as unknown as typeof IncomingMessage,
    ServerResponse: AppResponse as unknown as typeof ServerResponse,
  };
}

function inheritsFrom(value: unknown, prototype: object): value is object {
  return typeof value === 'object' && value !== null && Object.prototype.isPrototypeOf.call(prototype, value);
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
