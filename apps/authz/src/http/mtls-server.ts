// The mTLS port: HTTPS with authz's serving certificate, client certificates
// verified against the trust bundle by the TLS layer (required unless insecure
// callers are allowed). A new certificate or bundle applies to new connections
// at once (setSecureContext).
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { RequestListener } from 'node:http';
import type { ServingTls, TlsMaterial } from '../tls/serving-tls';

export interface ListeningMtlsServer {
  server: Server;
  port: number;
}

const contextOf = (material: TlsMaterial) => ({
  cert: material.certificateChainPem,
  key: material.privateKeyPem,
  ca: material.clientCaPem,
});

export async function listenMtls(
  handler: RequestListener,
  tls: ServingTls,
  options: { host: string; port: number; requireClientCertificate: boolean },
): Promise<ListeningMtlsServer> {
  const server = createServer(
    { ...contextOf(tls.material), requestCert: true, rejectUnauthorized: options.requireClientCertificate, minVersion: 'TLSv1.2' },
    handler,
  );
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  tls.onChange((material) => server.setSecureContext(contextOf(material)));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
}
