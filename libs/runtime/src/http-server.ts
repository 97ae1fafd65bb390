// The HTTP side of every app: listen, report the bound port, close gracefully.
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ListeningHttpServer {
  server: Server;
  /** The bound port (the real one when asked for port 0). */
  port: number;
}

/** Listens on `host:port`; rejects when the port cannot be bound. */
export async function listenHttp(handler: RequestListener, host: string, port: number): Promise<ListeningHttpServer> {
  const server = createServer(handler);
  // Outlive the idle timeouts of scrapers and load balancers, so they never reuse a socket we just closed.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
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
