// The serving side: per-identity snapshots, the ADS server (SotW and Delta),
// stream authentication and the proxy status writer.
export { AdsServer, identityOf, type ActiveStream, type AdsServerOptions } from './ads-server';
export { backstopAgeMs, type ConnectionAgeLimits } from './connection-age';
export { composeCallbacks, type SentResponse, type StreamInfo, type XdsCallbacks, type XdsProtocol } from './callbacks';
export { ProxyStatusWriter, type ProxyStatusWriterOptions } from './proxy-status-writer';
export { startXdsTls, xdsServerCredentials, type XdsTlsFiles } from './server-credentials';
export {
  SnapshotCache,
  identityKey,
  type AffectedServices,
  type ProxySnapshot,
  type SnapshotCacheOptions,
  type SnapshotSource,
  type Translate,
  type TypeSnapshot,
} from './snapshot-cache';
export {
  createStreamAuthenticator,
  serviceOfCertificate,
  xdsTokenRefusal,
  type StreamAuthenticator,
  type StreamAuthResult,
} from './stream-auth';
export { NODE_TRIMMING_READERS } from './node-trim';
export { versionOf } from './versions';
export { AdsServiceDefinition, decodeDeltaDiscoveryRequest, decodeDiscoveryRequest, encodeDiscoveryResponse } from './wire';
export { SotwSession } from './sotw-session';
export { DeltaSession } from './delta-session';
