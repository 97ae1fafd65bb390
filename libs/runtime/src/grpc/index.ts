export {
  awaitHttp2Preface,
  bindGrpcServer,
  DEFAULT_GRPC_TLS_LIMITS,
  DEFAULT_HTTP2_PREFACE_TIMEOUT_MS,
  grpcConnectionLimitsFrom,
  grpcConnectionOptions,
  grpcTlsLimitsFrom,
  pendingTlsConnections,
  serveGrpcHealth,
  stopGrpcServer,
  type GrpcBindOptions,
  type GrpcConnectionLimits,
  type GrpcTlsLimits,
} from './grpc-server';
export { http2PrefaceProgress, type Http2PrefaceProgress } from './http2-preface';
export { requestIdInterceptor } from './request-id-interceptor';
