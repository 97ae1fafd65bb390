// The workload side of issuance: a fresh key pair and a CSR for it. The key
// never leaves the process that made it (the agent writes it to its own files);
// only the CSR goes to the CA, which takes nothing from it but the public key.
import { webcrypto } from 'node:crypto';
import { x509, type CryptoKeyPair } from './x509';

export interface WorkloadKey {
  /** PKCS#8 PEM. */
  keyPem: string;
  csrPem: string;
}

/** An EC P-256 key and a CSR signed with it (subject CN = the service, for humans; the CA sets the identity). */
export async function generateWorkloadKey(service: string): Promise<WorkloadKey> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: [{ CN: [service] }], keys, signingAlgorithm: algorithm });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { keyPem: toPem(pkcs8, 'PRIVATE KEY'), csrPem: `${csr.toString('pem').trim()}\n` };
}

export function toPem(der: Buffer, label: string): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
