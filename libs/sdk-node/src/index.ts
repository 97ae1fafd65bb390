export { PROXYLESS_CHANNEL_OPTIONS } from './channel-options';
export { CALLER_KEY_ID_METADATA_KEY, CALLER_METADATA_KEY, meshServerInterceptor, meshTokenInterceptor } from './grpc-interceptors';
export { MeshTokenClient, MeshTokenError, type MeshTokenClientOptions } from './token-client';
export { MeshTokenRejected, MeshTokenVerifier, type MeshTokenVerifierOptions, type VerifiedCaller } from './token-verifier';
export { certificateFilesIn, writeCertificateFiles, type CertificateFiles, type CertificateMaterial } from './certificate-files';
export {
  peerCallerInterceptor,
  proxylessBootstrap,
  SERVER_LISTENER_TEMPLATE,
  WORKLOAD_CERT_PROVIDER,
  xdsServerUri,
  type ProxylessBootstrapOptions,
} from './proxyless-identity';
export {
  WorkloadCertificate,
  WorkloadCertificateError,
  type IssuedWorkloadCertificate,
  type WorkloadCertificateOptions,
  type WorkloadProof,
} from './workload-certificate';
export {
  callTraceOf,
  currentCallTrace,
  isSampled,
  outgoingTraceHeaders,
  traceContextInterceptor,
  traceContextServerInterceptor,
  type CallLogger,
  type CallTrace,
  type TraceContextOptions,
  type TraceContextServerOptions,
} from './trace-context';
export {
  createProxylessServer,
  limitProxylessTls,
  pendingProxylessTlsConnections,
  type ProxylessServerOptions,
  type ProxylessTlsLimits,
  type ProxylessTlsOptions,
  type TlsRefusal,
} from './proxyless-server';
