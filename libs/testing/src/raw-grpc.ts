import type { MethodDefinition } from '@grpc/grpc-js';

const same = (bytes: Buffer): Buffer => bytes;

/** A gRPC method (unary, or a bidirectional stream) that carries raw bytes, so a test service needs no generated code. */
export function rawBytesMethod(path: string, kind: 'unary' | 'bidi' = 'unary'): MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream: kind === 'bidi',
    responseStream: kind === 'bidi',
    requestSerialize: same,
    requestDeserialize: same,
    responseSerialize: same,
    responseDeserialize: same,
  };
}
