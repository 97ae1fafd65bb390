// Transport security of the xDS port, from TRELLIS_XDS_TLS_* files.
import { readFileSync } from 'node:fs';
import { ServerCredentials } from '@grpc/grpc-js';

export interface XdsTlsFiles {
  certFile?: string | undefined;
  keyFile?: string | undefined;
  /** Set: every client must present a certificate signed by this CA (mTLS). */
  clientCaFile?: string | undefined;
}

export function xdsServerCredentials(files: XdsTlsFiles): ServerCredentials {
  if (!files.certFile || !files.keyFile) return ServerCredentials.createInsecure();
  const ca = files.clientCaFile ? readFileSync(files.clientCaFile) : null;
  return ServerCredentials.createSsl(
    ca,
    [{ cert_chain: readFileSync(files.certFile), private_key: readFileSync(files.keyFile) }],
    ca !== null,
  );
}
