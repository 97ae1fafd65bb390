// Runs in a child process (grpc-js-xds reads its bootstrap once per process): a
// proxyless Who server — an XdsServer configured by the control plane (TLS, RBAC)
// that answers "<instance>|<verified caller>".
//   node xds-who-server.js <instanceId> <ip:port>   (bootstrap in GRPC_XDS_BOOTSTRAP_CONFIG)
// Prints {"serving": <port>} once the control plane's listener is in force, and {"tlsRefused": <reason>}
// for each connection the SDK's TLS limits close (TRELLIS_TLS_* in its environment).
import { ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { register, XdsServerCredentials } from '@grpc/grpc-js-xds';
import { CALLER_METADATA_KEY, createProxylessServer, peerCallerInterceptor } from '@trellis/sdk-node';
import { WhoService } from './who-service';

register(); // also registers the HTTP filters (router, RBAC) the server's listener names
const [instanceId = 'who', address = '127.0.0.1:0'] = process.argv.slice(2);

void (async () => {
  const server = await createProxylessServer({
    interceptors: [peerCallerInterceptor(() => process.env['TRELLIS_TRUST_DOMAIN'] ?? 'trellis.local')],
    onTlsRefused: (reason) => process.stdout.write(`${JSON.stringify({ tlsRefused: reason })}\n`),
  });
  server.addService(WhoService, {
    who: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) =>
      callback(null, Buffer.from(`${instanceId}|${String(call.metadata.get(CALLER_METADATA_KEY)[0] ?? '')}`)),
  });
  server.bindAsync(address, new XdsServerCredentials(ServerCredentials.createInsecure()), (err, port) => {
    if (err) {
      process.stderr.write(`bind failed: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`${JSON.stringify({ serving: port })}\n`);
  });
  process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
})();
