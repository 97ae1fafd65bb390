// The one place the SDK reaches into grpc-js internals. An XdsServer (grpc-js-xds) accepts TCP itself and
// hands each connection to a connection injector per filter chain; grpc-js terminates the chain's TLS in
// an http2.createSecureServer it builds in Server.createHttp2Server (private), from credentials the
// XdsServer makes out of the xDS certificate providers (requestCert, rejectUnauthorized, ciphers, fixed).
// No option of the XdsServer, of XdsServerCredentials or of the bootstrap reaches that server (the
// credentials passed to bindAsync serve only plaintext fallback chains), so Node's 120 s handshake default
// and no cap apply to it. The method that builds it is the only handle on it: wrap it on one server
// instance, and hand each secure server it returns to `guard`. grpc-secure-servers.test.ts fails if
// grpc-js stops building its secure servers there (and this throws at once if the method is gone).
import type { Server } from '@grpc/grpc-js';
import type { Http2SecureServer } from 'node:http2';
import { Server as TlsServer } from 'node:tls';

type Http2ServerFactory = (this: Server, credentials: unknown) => unknown;

/** Calls `guard` with each TLS-terminating HTTP/2 server grpc-js builds for `server` from now on (before it sees a connection). */
export function onSecureHttp2Servers(server: Server, guard: (secureServer: Http2SecureServer) => void): void {
  const internals = server as unknown as { createHttp2Server?: Http2ServerFactory };
  const build = internals.createHttp2Server;
  if (typeof build !== 'function') {
    throw new Error(
      '@grpc/grpc-js no longer builds its HTTP/2 servers in Server.createHttp2Server: the proxyless TLS limits cannot be applied (sdk-node grpc-secure-servers.ts)',
    );
  }
  internals.createHttp2Server = function (this: Server, credentials: unknown) {
    const http2Server = build.call(this, credentials);
    if (http2Server instanceof TlsServer) guard(http2Server as Http2SecureServer);
    return http2Server;
  };
}
