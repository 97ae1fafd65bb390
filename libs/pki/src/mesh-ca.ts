// The mesh CA: signs workload certificates (X.509-SVIDs) from a CA the operator
// supplies — a root or an intermediate and its key — for a service whose
// identity the caller has already proven. The identity is only ever the URI SAN
// spiffe://<trust domain>/svc/<service>; nothing of the CSR but its public key
// is used. The trust bundle (one root, two during a CA rotation) goes out with
// every certificate, so agents pick up a new root with their next renewal.
import { createPrivateKey, createPublicKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { componentSpiffeIdOf, spiffeIdOf, weakKeyReason, type TrellisComponent } from '@trellis/mesh-contracts';
import { pemCertificates, signingAlgorithmOf, x509, type CryptoKey } from './x509';

export interface CaMaterial {
  /** The signing CA's certificate, optionally followed by the intermediates up to (not including) the root. */
  certificatePem: string;
  /** Its private key (PKCS#8, PKCS#1 or SEC1 PEM). */
  keyPem: string;
  /** The roots workloads trust. Absent: the CA certificate itself, which must then be a self-signed root. */
  trustBundlePem?: string | undefined;
}

export interface MeshCaOptions {
  trustDomain: string;
  /** Lifetime of issued certificates (default 24 h). */
  lifetimeSeconds: number;
  /** notBefore is backdated this much, so a peer whose clock is a little behind accepts a fresh certificate. */
  backdateSeconds?: number;
}

export interface IssuedCertificate {
  spiffeId: string;
  /** The workload certificate, then the intermediates (not the root): what a workload presents. */
  chainPem: string;
  certificatePem: string;
  trustBundlePem: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
}

/** A CSR the CA refuses; `reason` is safe to return to the caller. */
export class CsrError extends Error {}

/** CA material the CA cannot use; names what is wrong (the process should not start with it). */
export class CaMaterialError extends Error {}

export class MeshCa {
  private constructor(
    private readonly signer: CryptoKey,
    private readonly caCert: x509.X509Certificate,
    private readonly intermediatesPem: string[],
    readonly trustBundlePem: string,
    private readonly options: MeshCaOptions,
  ) {}

  static async load(material: CaMaterial, options: MeshCaOptions, now = Date.now()): Promise<MeshCa> {
    const chain = pemCertificates(material.certificatePem);
    if (chain.length === 0) throw new CaMaterialError('the CA certificate file holds no PEM certificate');
    const caCert = new x509.X509Certificate(chain[0]!);
    const nodeCa = new X509Certificate(chain[0]!);
    if (!nodeCa.ca) throw new CaMaterialError(`${caCert.subject} is not a CA certificate (basicConstraints cA is not set)`);
    const usage = caCert.getExtension(x509.KeyUsagesExtension);
    if (usage && !(usage.usages & x509.KeyUsageFlags.keyCertSign))
      throw new CaMaterialError(`${caCert.subject} may not sign certificates (keyUsage lacks keyCertSign)`);
    if (new Date(nodeCa.validTo).getTime() <= now) throw new CaMaterialError(`${caCert.subject} expired at ${nodeCa.validTo}`);

    let privateKey;
    try {
      privateKey = createPrivateKey(material.keyPem);
    } catch (err) {
      throw new CaMaterialError(`the CA key is not a readable PEM private key: ${(err as Error).message}`);
    }
    if (!nodeCa.checkPrivateKey(privateKey)) throw new CaMaterialError(`the CA key does not belong to ${caCert.subject}`);
    const signer = await importSigningKey(privateKey);

    const roots = pemCertificates(material.trustBundlePem ?? '');
    if (material.trustBundlePem === undefined) {
      if (chain.length > 1 || !nodeCa.checkIssued(nodeCa))
        throw new CaMaterialError('the CA certificate is not a self-signed root: configure the trust bundle (the roots) too');
      roots.push(chain[0]!);
    }
    if (roots.length === 0) throw new CaMaterialError('the trust bundle holds no PEM certificate');
    // The chain we hand out must verify against a root we hand out.
    const top = new X509Certificate(chain[chain.length - 1]!);
    const anchored = roots.some((pem) => {
      const root = new X509Certificate(pem);
      return root.fingerprint256 === top.fingerprint256 || (top.checkIssued(root) && top.verify(root.publicKey));
    });
    if (!anchored) throw new CaMaterialError(`${caCert.subject} does not chain to any root in the trust bundle`);
    return new MeshCa(signer, caCert, chain.slice(1), `${roots.map((pem) => pem.trim()).join('\n')}\n`, options);
  }

  get trustDomain(): string {
    return this.options.trustDomain;
  }

  /** When the signing CA certificate itself expires. */
  get notAfter(): Date {
    return this.caCert.notAfter;
  }

  /** Signs a certificate for `service` with the CSR's public key. Throws CsrError for a CSR it refuses. */
  async issue(csrPem: string, service: string, now = Date.now()): Promise<IssuedCertificate> {
    return this.sign(await verifiedCsrKey(csrPem), spiffeIdOf(this.options.trustDomain, service), service, now);
  }

  /**
   * Signs a certificate for one of Trellis's own components (authz's serving
   * certificate), whose SPIFFE ID lies outside `/svc/`. Only code inside authz calls
   * this; no HTTP endpoint reaches it.
   */
  async issueComponent(csrPem: string, component: TrellisComponent, now = Date.now()): Promise<IssuedCertificate> {
    return this.sign(await verifiedCsrKey(csrPem), componentSpiffeIdOf(this.options.trustDomain, component), `trellis-${component}`, now);
  }

  private async sign(publicKey: CryptoKey, spiffeId: string, commonName: string, now: number): Promise<IssuedCertificate> {
    const notBefore = new Date(Math.floor(now / 1000) * 1000 - (this.options.backdateSeconds ?? 60) * 1000);
    // Never outlive the CA: a chain with an expired link does not verify. X.509 times have whole seconds.
    const notAfter = new Date(
      Math.floor(Math.min(now + this.options.lifetimeSeconds * 1000, this.caCert.notAfter.getTime()) / 1000) * 1000,
    );
    const serial = randomBytes(16);
    serial[0]! &= 0x7f; // a positive INTEGER
    const keyUsage =
      publicKey.algorithm.name === 'ECDSA'
        ? x509.KeyUsageFlags.digitalSignature
        : x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial.toString('hex'),
      // SPIFFE X.509-SVID: the URI SAN is the identity; the subject only helps humans reading it.
      subject: [{ CN: [commonName] }, { O: [this.options.trustDomain] }],
      issuer: this.caCert.subject,
      notBefore,
      notAfter,
      publicKey,
      signingKey: this.signer,
      signingAlgorithm: signingAlgorithmOf(this.signer),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(keyUsage, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], false),
        await x509.SubjectKeyIdentifierExtension.create(publicKey, false),
        await x509.AuthorityKeyIdentifierExtension.create(this.caCert.publicKey, false),
      ],
    });
    const certificatePem = `${cert.toString('pem').trim()}\n`; // PEM files end with a newline, so bundles concatenate safely
    return {
      spiffeId,
      certificatePem,
      chainPem: [certificatePem, ...this.caChainPem()].map((pem) => `${pem.trim()}\n`).join(''),
      trustBundlePem: this.trustBundlePem,
      serialNumber: cert.serialNumber,
      notBefore,
      notAfter,
    };
  }

  /** The signing CA and its intermediates: what follows a leaf in a chain (the CA itself when it is not a root). */
  private caChainPem(): string[] {
    const self = new X509Certificate(this.caCert.toString('pem'));
    const isTrustedRoot = pemCertificates(this.trustBundlePem).some(
      (pem) => new X509Certificate(pem).fingerprint256 === self.fingerprint256,
    );
    return isTrustedRoot ? [] : [this.caCert.toString('pem'), ...this.intermediatesPem];
  }
}

async function importSigningKey(key: ReturnType<typeof createPrivateKey>): Promise<CryptoKey> {
  const der = key.export({ type: 'pkcs8', format: 'der' });
  if (key.asymmetricKeyType === 'rsa') {
    const weakness = weakKeyReason(key);
    if (weakness) throw new CaMaterialError(`the CA key is not accepted: ${weakness}`);
    return webcrypto.subtle.importKey('pkcs8', der, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['sign']);
  }
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : undefined;
    if (!namedCurve) throw new CaMaterialError(`the CA key's curve ${curve ?? '?'} is not P-256 or P-384`);
    return webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve }, false, ['sign']);
  }
  throw new CaMaterialError(`the CA key is ${key.asymmetricKeyType ?? 'unknown'}; use RSA (≥ 2048 bits) or EC P-256/P-384`);
}

/** The CSR's public key, after checking that the CSR parses, is self-signed by it, and the key is one we issue for. */
async function verifiedCsrKey(csrPem: string): Promise<CryptoKey> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem.trim());
  } catch {
    throw new CsrError('csr: not a PEM or base64 PKCS#10 certificate request');
  }
  const alg = csr.publicKey.algorithm as webcrypto.RsaHashedKeyAlgorithm & webcrypto.EcKeyAlgorithm;
  let importAlg: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams;
  if (alg.name === 'ECDSA') {
    if (alg.namedCurve !== 'P-256' && alg.namedCurve !== 'P-384')
      throw new CsrError(`csr: EC curve ${alg.namedCurve} is not P-256 or P-384`);
    importAlg = { name: 'ECDSA', namedCurve: alg.namedCurve };
  } else if (alg.name === 'RSASSA-PKCS1-v1_5' || alg.name === 'RSA-PSS') {
    if ((alg.modulusLength ?? 0) < 2048) throw new CsrError('csr: RSA keys must have at least 2048 bits');
    importAlg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  } else {
    throw new CsrError(`csr: key algorithm ${alg.name} is not accepted (use EC P-256 or RSA ≥ 2048)`);
  }
  let valid = false;
  try {
    valid = await csr.verify();
  } catch {
    valid = false;
  }
  if (!valid) throw new CsrError('csr: the signature does not verify with its own public key');
  // The one rule for trusted keys (e = 65537 too): peers will trust this key in every handshake.
  const weakness = weakKeyReason(createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' }));
  if (weakness) throw new CsrError(`csr: ${weakness}`);
  return webcrypto.subtle.importKey('spki', csr.publicKey.rawData, importAlg, true, ['verify']) as Promise<CryptoKey>;
}
