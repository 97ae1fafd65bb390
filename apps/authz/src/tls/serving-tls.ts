// authz's own TLS: the certificate it serves on its ext_authz gRPC port and its
// mTLS token port, and the roots it verifies callers' client certificates
// against. The certificate is the operator's (TRELLIS_TLS_CERT_FILE/KEY_FILE,
// which must carry spiffe://<td>/trellis/authz for mesh clients that pin it) or,
// by default, one authz issues itself from its mesh CA for that identity, with a
// key that never leaves the process. The client roots are
// TRELLIS_TLS_CLIENT_CA_FILE or the mesh CA's trust bundle (two roots during a
// CA rotation). What serves and reloads it is @trellis/runtime/grpc's ServingTls
// (shared with the control plane's xDS port); this file says where authz's comes from.
import { readFile } from 'node:fs/promises';
import type { MeshCa } from '@trellis/pki';
import { generateWorkloadKey } from '@trellis/pki';
import { tlsFilesSource, type TlsMaterialSource } from '@trellis/runtime/grpc';

/** The operator's files, re-read on each refresh; the client roots a file or the mesh CA's bundle. */
export function operatorFilesSource(certFile: string, keyFile: string, clientCa: string | (() => MeshCa | undefined)): TlsMaterialSource {
  return tlsFilesSource({ certFile, keyFile, clientCa: typeof clientCa === 'string' ? clientCa : () => meshCaBundle(clientCa) });
}

/**
 * A certificate authz issues itself from its mesh CA for spiffe://<td>/trellis/authz:
 * renewed at half its life, or as soon as the CA's trust bundle changes.
 */
export function selfIssuedSource(
  ca: () => MeshCa | undefined,
  clientCaFile: string | undefined,
  clock: () => number = Date.now,
): TlsMaterialSource {
  let issuedFor: { bundle: string; renewAt: number } | undefined;
  return {
    describe: `a certificate from authz's own mesh CA (client roots: ${clientCaFile ?? 'the mesh CA trust bundle'})`,
    async next(current) {
      const meshCa = ca();
      if (!meshCa) throw new Error('the mesh CA is not loaded');
      const clientCaPem = clientCaFile !== undefined ? await readFile(clientCaFile, 'utf8') : meshCaBundle(ca);
      if (current && issuedFor && issuedFor.bundle === meshCa.trustBundlePem && clock() < issuedFor.renewAt) {
        return current.clientCaPem === clientCaPem ? current : { ...current, clientCaPem };
      }
      const key = await generateWorkloadKey('trellis-authz');
      const issued = await meshCa.issueComponent(key.csrPem, 'authz', clock());
      const notBefore = issued.notBefore.getTime();
      issuedFor = { bundle: meshCa.trustBundlePem, renewAt: notBefore + (issued.notAfter.getTime() - notBefore) / 2 };
      return { certificateChainPem: issued.chainPem, privateKeyPem: key.keyPem, clientCaPem };
    },
  };
}

function meshCaBundle(ca: () => MeshCa | undefined): string {
  const meshCa = ca();
  if (!meshCa) throw new Error('no client roots: the mesh CA is not loaded and TRELLIS_TLS_CLIENT_CA_FILE is not set');
  return meshCa.trustBundlePem;
}
