// The TLS guard and the gRPC TLS limits without grpc-js's server kit: what the SDK's proxyless
// server shares with the apps' ports (a service bundling the SDK gets no grpc-health-check from it).
export {
  DEFAULT_GRPC_TLS_LIMITS,
  DEFAULT_HTTP2_PREFACE_TIMEOUT_MS,
  grpcTlsLimitsFrom,
  grpcTlsLimitsFromEnv,
  type GrpcTlsLimits,
} from './grpc/tls-limits';
export { guardTlsServer, tlsConnectionKey, type TlsGuard, type TlsGuardOptions, type TlsRefusal } from './tls-guard';
