// The contract grpc-secure-servers.ts relies on, checked against the installed grpc-js: the HTTP/2 server
// a connection injector (what an XdsServer's filter chains use) builds for TLS credentials comes out of
// Server.createHttp2Server. If a grpc-js upgrade moves it, this fails and the proxyless TLS limits need a new handle.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { createTestPki, type TestPki } from '@trellis/testing';
import type { Http2SecureServer } from 'node:http2';
import { Server as TlsServer } from 'node:tls';
import { onSecureHttp2Servers } from './grpc-secure-servers';

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});
afterAll(() => pki?.remove());

describe('onSecureHttp2Servers', () => {
  it('hands over the TLS server grpc-js builds for a TLS connection injector, and none for a plaintext one', () => {
    const server = new Server();
    const seen: Http2SecureServer[] = [];
    onSecureHttp2Servers(server, (secureServer) => seen.push(secureServer));
    const plaintext = server.createConnectionInjector(ServerCredentials.createInsecure());
    expect(seen).toHaveLength(0);
    const tls = server.createConnectionInjector(
      ServerCredentials.createSsl(pki.ca, [{ cert_chain: pki.server.cert, private_key: pki.server.key }], true),
    );
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeInstanceOf(TlsServer);
    tls.destroy();
    plaintext.destroy();
    server.forceShutdown();
  });

  it('fails at once, naming the cause, on a server without the method', () => {
    const server = new Server();
    Object.defineProperty(server, 'createHttp2Server', { value: undefined });
    expect(() => onSecureHttp2Servers(server, () => undefined)).toThrow(/createHttp2Server/);
  });
});
