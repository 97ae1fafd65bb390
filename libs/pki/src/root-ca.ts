// Self-signed roots: the local mesh's dev root (generated once into its data
// directory, never by a production process) and the roots tests rotate between.
// An operator's production root comes from their own PKI.
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
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

/**
 * A serving certificate (DNS and IP SANs, serverAuth) signed by `root`: the control
 * plane's xDS certificate in the local mesh and in tests. Production's comes from the
 * operator's PKI.
 */
export async function issueServerCertificate(
  root: RootCa,
  options: { commonName: string; dnsNames?: string[]; ipAddresses?: string[]; lifetimeDays?: number },
): Promise<RootCa> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const issuer = new x509.X509Certificate(root.certificatePem);
  const rootKeyDer = createPrivateKey(root.keyPem).export({ type: 'pkcs8', format: 'der' });
  const signingKey = await webcrypto.subtle.importKey('pkcs8', rootKeyDer, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  const now = Date.now();
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    subject: [{ CN: [options.commonName] }],
    issuer: issuer.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(Math.min(now + (options.lifetimeDays ?? 365) * 86_400_000, issuer.notAfter.getTime())),
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(
        [
          ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
          ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
        ],
        false,
      ),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.publicKey, false),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { certificatePem: `${cert.toString('pem').trim()}\n`, keyPem: toPem(pkcs8, 'PRIVATE KEY') };
}
