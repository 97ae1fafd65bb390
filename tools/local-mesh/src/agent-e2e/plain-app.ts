// A plain gRPC app for the agent's end-to-end suite: no Trellis SDK, no tokens, no
// registration — the Hop service answering with its own instance id, and the standard
// gRPC health service, NOT_SERVING while the file PLAIN_APP_UNHEALTHY_FILE exists.
import { existsSync } from 'node:fs';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { CallReply, HopService, type CallRequest } from '@trellis/envoy-types/trellis/demo/v1/hop';

const service = process.env['PLAIN_APP_SERVICE'] ?? 'echo';
const instance = process.env['PLAIN_APP_INSTANCE'] ?? 'echo-1';
const port = Number(process.env['PLAIN_APP_PORT']);
const unhealthyFile = process.env['PLAIN_APP_UNHEALTHY_FILE'];

const server = new Server();
const health = new HealthImplementation({ '': 'SERVING' });
health.addToServer(server);
server.addService(HopService, {
  call: (_call: ServerUnaryCall<CallRequest, CallReply>, callback: sendUnaryData<CallReply>) =>
    callback(null, CallReply.fromPartial({ hops: [{ service, instance }] })),
});
server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err) => {
  if (err) {
    process.stderr.write(`plain-app: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify({ msg: 'plain app serving', instance, port })}\n`);
});
setInterval(() => health.setStatus('', unhealthyFile && existsSync(unhealthyFile) ? 'NOT_SERVING' : 'SERVING'), 100).unref();

process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
