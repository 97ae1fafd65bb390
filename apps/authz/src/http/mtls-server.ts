// The mTLS port: HTTPS with authz's serving certificate, client certificates
// verified against the trust bundle by the TLS layer (required unless insecure
// callers are allowed). A new certificate or bundle applies to new connections
// at once (setSecureContext).
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { RequestListener } from 'node:http';
import {
  closeSilentConnections,
  DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_TLS_MAX_PENDING_CONNECTIONS,
  guardTlsServer,
  httpServerOptions,
  type HttpLimits,
  type TlsConnectionLimits,
  type TlsGuard,
  type TlsRefusal,
} from '@trellis/runtime';
import type { ServingTls, TlsMaterial } from '@trellis/runtime/grpc';

export interface ListeningMtlsServer {
  server: Server;
  port: number;
  /** Connections not yet through their handshake (a gauge). */
  guard: TlsGuard;
}

const contextOf = (material: TlsMaterial) => ({
  cert: material.certificateChainPem,
  key: material.privateKeyPem,
  ca: material.clientCaPem,
});

export async function listenMtls(
  handler: RequestListener,
  tls: ServingTls,
  options: {
    host: string;
    port: number;
    requireClientCertificate: boolean;
    limits?: HttpLimits;
    /** The handshake's deadline from accept, and the cap on connections still in it (as on the gRPC port). */
    tlsLimits?: TlsConnectionLimits;
    onTlsRefused?: (reason: TlsRefusal) => void;
  },
): Promise<ListeningMtlsServer> {
  // As every HTTP listener (@trellis/runtime's listenHttp): the same slow-client limits, and for an express app
  // requests and responses made with its prototypes, so express's per-request setPrototypeOf changes no hidden class.
  const httpOptions = httpServerOptions(handler, options.limits);
  const server = createServer(
    {
      ...contextOf(tls.material),
      requestCert: true,
      rejectUnauthorized: options.requireClientCertificate,
      minVersion: 'TLSv1.2',
      ...httpOptions,
    },
    handler,
  );
  server.keepAliveTimeout = 65_000;
  closeSilentConnections(server, httpOptions.headersTimeout);
  // A client trickling its ClientHello is a slow loris before HTTP starts (Node's default waits 120 s);
  // so is a flood of them, which the cap on connections still in their handshake bounds.
  const guard = guardTlsServer(server, {
    handshakeTimeoutMs: options.tlsLimits?.handshakeTimeoutMs ?? DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
    maxPendingConnections: options.tlsLimits?.maxPendingConnections ?? DEFAULT_TLS_MAX_PENDING_CONNECTIONS,
    onRefused: options.onTlsRefused,
  });
  tls.onChange((material) => server.setSecureContext(contextOf(material)));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port, guard };
}
