export {
  awaitHttp2Preface,
  bindGrpcServer,
  grpcConnectionLimitsFrom,
  grpcConnectionOptions,
  listenOnEveryAddress,
  pendingTlsConnections,
  serveGrpcHealth,
  stopGrpcServer,
  type GrpcBindOptions,
  type GrpcConnectionLimits,
  type HostResolver,
} from './grpc-server';
export {
  DEFAULT_GRPC_TLS_LIMITS,
  DEFAULT_HTTP2_PREFACE_TIMEOUT_MS,
  grpcTlsLimitsFrom,
  grpcTlsLimitsFromEnv,
  type GrpcTlsLimits,
} from './tls-limits';
export { releaseDecodedReadBuffers } from './decoder-read-buffers';
export { readRequestsAsTheyArrive, ReadingDecoder, type RequestReader } from './request-readers';
export { http2PrefaceProgress, type Http2PrefaceProgress } from './http2-preface';
export { requestIdInterceptor } from './request-id-interceptor';
export {
  checkTlsMaterial,
  ServingTls,
  tlsFilesSource,
  TlsMaterialProvider,
  type ServingTlsOptions,
  type TlsFiles,
  type TlsMaterial,
  type TlsMaterialSource,
  type TlsRefreshResult,
} from './serving-tls';
