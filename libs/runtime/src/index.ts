// The lifecycle kit every app shares. The gRPC half is `@trellis/runtime/grpc`, so an app
// without gRPC (the registry) does not bundle grpc-js.
export { afterSocketsRead } from './after-sockets-read';
export { certificateNotAfterSeconds, registerCertificateExpiryGauge } from './certificate-expiry';
export { ConfigError, env, etcdEnvSchema, grpcConnectionEnv, httpLimitsEnv, loadConfig, tlsLimitsEnv, type EtcdEnv } from './config';
export { Health, opsRouter, type MetricsSource, type ReadinessCheck, type ReadinessListener } from './health';
export {
  closeHttpServer,
  closeSilentConnections,
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  httpServerOptions,
  listenHttp,
  type HttpLimits,
  type ListeningHttpServer,
} from './http-server';
export { createLogger, type Logger } from './logger';
export { causeChain, installProcessGuards, runMain } from './main';
export { createMetricsRegistry } from './metrics';
export { fieldPath, PROBLEM_TYPE_BASE, ProblemError, sendProblem, zodFieldErrors, type FieldError, type Problem } from './problem';
export { parseTraceparent, REQUEST_ID_HEADER, requestIdFor, requestIdIn, requestIds, TRACEPARENT_HEADER } from './request-id';
export {
  DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_TLS_MAX_PENDING_CONNECTIONS,
  guardTlsServer,
  type TlsConnectionLimits,
  type TlsGuard,
  type TlsGuardOptions,
  type TlsRefusal,
} from './tls-guard';
export { parseSecretFile, ReloadingSecretFile, type SecretFileOptions, type SecretReloadResult } from './secret-file';
export { closeInOrder, installShutdown, runShutdownSteps, stoppingOnFailure, type ShutdownStep } from './shutdown';
