// A one-method gRPC service for end-to-end tests: `Who` answers with the id of
// the instance that served the call, so tests can see where traffic goes.
import { Server, ServerCredentials, type ServiceDefinition } from '@grpc/grpc-js';

const identity = (b: Buffer): Buffer => b;

export const WhoService: ServiceDefinition = {
  who: {
    path: '/trellis.test.Who/Who',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

/** Starts a Who server on 127.0.0.1:0 answering with `instanceId`. */
export async function startWhoServer(instanceId: string): Promise<{ port: number; stop(): Promise<void> }> {
  const server = new Server();
  server.addService(WhoService, {
    who: (_call: unknown, callback: (err: null, res: Buffer) => void) => callback(null, Buffer.from(instanceId)),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
}
