// Transport security of the xDS port, from TRELLIS_XDS_TLS_* files, followed without
// a restart: @trellis/runtime/grpc's ServingTls (authz's ports use the same) reads
// them again on each refresh, and a change serves new connections while established
// streams keep theirs. Files that do not load keep the last good ones: the port never
// falls back to plaintext.
import { ServerCredentials } from '@grpc/grpc-js';
import { ServingTls, tlsFilesSource, type ServingTlsOptions } from '@trellis/runtime/grpc';

export interface XdsTlsFiles {
  certFile?: string | undefined;
  keyFile?: string | undefined;
  /** Set: every client must present a certificate signed by this CA (mTLS). */
  clientCaFile?: string | undefined;
}

/** The xDS port's TLS, loaded (a file that does not load throws: no start without the TLS configured); undefined without files. */
export async function startXdsTls(files: XdsTlsFiles, options: Omit<ServingTlsOptions, 'name'>): Promise<ServingTls | undefined> {
  if (!files.certFile || !files.keyFile) return undefined;
  const source = tlsFilesSource({ certFile: files.certFile, keyFile: files.keyFile, clientCa: files.clientCaFile });
  return ServingTls.start(source, { ...options, name: 'the xDS port' });
}

/** Plaintext without TLS; with a client CA, client certificates required (mTLS). */
export function xdsServerCredentials(tls: ServingTls | undefined): ServerCredentials {
  return tls ? tls.serverCredentials(tls.material.clientCaPem !== undefined) : ServerCredentials.createInsecure();
}
