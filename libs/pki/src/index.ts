export { CaMaterialError, CsrError, MeshCa, type CaMaterial, type IssuedCertificate, type MeshCaOptions } from './mesh-ca';
export {
  identityOfPeerCertificate,
  serviceOfPeerCertificate,
  spiffeServerIdentityCheck,
  uriSans,
  type PeerIdentity,
} from './peer-identity';
export { generateRootCa, issueServerCertificate, loadOrCreateDevRoot, type RootCa } from './root-ca';
export { generateWorkloadKey, toPem, type WorkloadKey } from './workload-key';
export { pemCertificates } from './x509';
