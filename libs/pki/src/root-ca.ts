// Self-signed roots: the local mesh's dev root (generated once into its data
// directory, never by a production process) and the roots tests rotate between.
// An operator's production root comes from their own PKI.
import { randomBytes, webcrypto } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { toPem } from './workload-key';
import { x509, type CryptoKeyPair } from './x509';

export interface RootCa {
  certificatePem: string;
  keyPem: string;
}

/** An EC P-256 root CA (pathLen 1, so it may also sign one level of intermediates). */
export async function generateRootCa(options: { commonName: string; lifetimeDays?: number; now?: number }): Promise<RootCa> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = options.now ?? Date.now();
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: [{ CN: [options.commonName] }],
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (options.lifetimeDays ?? 3650) * 86_400_000),
    keys,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { certificatePem: `${cert.toString('pem').trim()}\n`, keyPem: toPem(pkcs8, 'PRIVATE KEY') };
}

/**
 * The local mesh's dev root in `dir` (`ca.crt`, `ca.key`), generated on first use and
 * kept, so certificates and trust survive restarts of `npm start`.
 */
export async function loadOrCreateDevRoot(dir: string): Promise<RootCa & { certFile: string; keyFile: string; created: boolean }> {
  const certFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'ca.key');
  try {
    return { certificatePem: await readFile(certFile, 'utf8'), keyPem: await readFile(keyFile, 'utf8'), certFile, keyFile, created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const root = await generateRootCa({ commonName: 'Trellis local development root' });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(keyFile, root.keyPem, { mode: 0o600 });
  await writeFile(certFile, root.certificatePem, { mode: 0o644 });
  return { ...root, certFile, keyFile, created: true };
}
