// A one-method gRPC service for end-to-end tests: `Who` answers with the id of
// the instance that served the call, so tests can see where traffic goes.
import { Metadata, Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition } from '@grpc/grpc-js';

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

/**
 * The response header naming the instance: a client sees who began answering a call even when
 * the call then fails (its trailers never came).
 */
export const WHO_INSTANCE_HEADER = 'who-instance';

/** Starts a Who server on 127.0.0.1:0 answering with `instanceId`. */
export async function startWhoServer(instanceId: string): Promise<{ port: number; stop(): Promise<void> }> {
  const server = new Server();
  server.addService(WhoService, {
    who: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
      const headers = new Metadata();
      headers.set(WHO_INSTANCE_HEADER, instanceId);
      call.sendMetadata(headers);
      callback(null, Buffer.from(instanceId));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
}
