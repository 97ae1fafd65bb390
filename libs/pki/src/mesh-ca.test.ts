import { createPrivateKey, generateKeyPairSync, webcrypto, X509Certificate } from 'node:crypto';
import { CaMaterialError, CsrError, MeshCa } from './mesh-ca';
import { generateRootCa, type RootCa } from './root-ca';
import { generateWorkloadKey, toPem } from './workload-key';
import { x509 } from './x509';

const options = { trustDomain: 'mesh.example', lifetimeSeconds: 86_400 };

/** An intermediate CA signed by `root` (what an operator with an offline root would hand authz). */
async function intermediateOf(root: RootCa): Promise<RootCa> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const rootCert = new x509.X509Certificate(root.certificatePem);
  const rootKey = await webcrypto.subtle.importKey(
    'pkcs8',
    createPrivateKey(root.keyPem).export({ type: 'pkcs8', format: 'der' }),
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  );
  const cert = await x509.X509CertificateGenerator.create({
    subject: 'CN=Trellis intermediate',
    issuer: rootCert.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 30 * 86_400_000),
    publicKey: keys.publicKey,
    signingKey: rootKey,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      await x509.AuthorityKeyIdentifierExtension.create(rootCert.publicKey),
    ],
  });
  return {
    certificatePem: cert.toString('pem'),
    keyPem: toPem(Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), 'PRIVATE KEY'),
  };
}

/** What a TLS peer checks: each link signed by the next, the last by a root of the bundle, all valid now. */
function verifiesAgainst(chainPem: string, bundlePem: string, at = new Date()): boolean {
  const chain = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!.map((p) => new X509Certificate(p));
  const roots = bundlePem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!.map((p) => new X509Certificate(p));
  const valid = (c: X509Certificate) => new Date(c.validFrom) <= at && at <= new Date(c.validTo);
  for (let i = 0; i < chain.length; i++) {
    if (!valid(chain[i]!)) return false;
    const issuer = chain[i + 1] ?? roots.find((r) => chain[i]!.checkIssued(r));
    if (!issuer || !chain[i]!.verify(issuer.publicKey) || !valid(issuer)) return false;
  }
  return true;
}

describe('MeshCa', () => {
  let root: RootCa;
  beforeAll(async () => {
    root = await generateRootCa({ commonName: 'test root' });
  });

  it('issues a SPIFFE certificate for the service with the CSR key: SAN, validity, key usage, chain to the root', async () => {
    const ca = await MeshCa.load({ certificatePem: root.certificatePem, keyPem: root.keyPem }, options);
    const workload = await generateWorkloadKey('service-a');
    const now = Date.now();
    const issued = await ca.issue(workload.csrPem, 'service-a', now);

    const cert = new X509Certificate(issued.certificatePem);
    expect(cert.subjectAltName).toBe('URI:spiffe://mesh.example/svc/service-a');
    expect(issued.spiffeId).toBe('spiffe://mesh.example/svc/service-a');
    expect(cert.ca).toBe(false);
    expect(cert.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'])); // serverAuth, clientAuth
    const x = new x509.X509Certificate(issued.certificatePem);
    const usage = x.getExtension(x509.KeyUsagesExtension)!;
    expect(usage.critical).toBe(true);
    expect(usage.usages & x509.KeyUsageFlags.digitalSignature).toBeTruthy();
    expect(usage.usages & x509.KeyUsageFlags.keyCertSign).toBeFalsy();
    // 24 h, backdated a minute for peers whose clocks are slightly behind.
    const lifetime = new Date(cert.validTo).getTime() - new Date(cert.validFrom).getTime();
    expect(lifetime).toBeGreaterThanOrEqual(86_400_000);
    expect(lifetime).toBeLessThanOrEqual(86_400_000 + 61_000);
    expect(new Date(cert.validTo).getTime()).toBeLessThanOrEqual(now + 86_400_000);
    // The certificate carries the CSR's key: the workload's private key matches it.
    expect(cert.checkPrivateKey(createPrivateKey(workload.keyPem))).toBe(true);
    expect(cert.checkIssued(new X509Certificate(root.certificatePem))).toBe(true);
    expect(verifiesAgainst(issued.chainPem, issued.trustBundlePem)).toBe(true);
    expect(issued.chainPem.trim()).toBe(issued.certificatePem.trim()); // signed by the root itself: no intermediates to send
    expect(verifiesAgainst(issued.chainPem, issued.trustBundlePem, new Date(now + 2 * 86_400_000))).toBe(false);
  });

  it("issues a Trellis component's identity outside /svc/, so no service name can ever hold it", async () => {
    const ca = await MeshCa.load({ certificatePem: root.certificatePem, keyPem: root.keyPem }, options);
    const key = await generateWorkloadKey('authz');
    const issued = await ca.issueComponent(key.csrPem, 'authz');
    const cert = new X509Certificate(issued.certificatePem);
    expect(cert.subjectAltName).toBe('URI:spiffe://mesh.example/trellis/authz');
    expect(cert.subject).toContain('CN=trellis-authz');
    expect(cert.checkPrivateKey(createPrivateKey(key.keyPem))).toBe(true);
    expect(verifiesAgainst(issued.chainPem, issued.trustBundlePem)).toBe(true);
    const service = await ca.issue((await generateWorkloadKey('authz')).csrPem, 'authz');
    expect(new X509Certificate(service.certificatePem).subjectAltName).toBe('URI:spiffe://mesh.example/svc/authz');
  });

  it('signs from an intermediate: the chain carries it and verifies against the root only', async () => {
    const intermediate = await intermediateOf(root);
    const ca = await MeshCa.load(
      { certificatePem: intermediate.certificatePem, keyPem: intermediate.keyPem, trustBundlePem: root.certificatePem },
      options,
    );
    const issued = await ca.issue((await generateWorkloadKey('b')).csrPem, 'b');
    expect(issued.chainPem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(issued.trustBundlePem.match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
    expect(verifiesAgainst(issued.chainPem, issued.trustBundlePem)).toBe(true);
    expect(verifiesAgainst(issued.certificatePem, issued.trustBundlePem)).toBe(false); // the leaf alone does not reach the root
  });

  it('hands out both roots during a CA rotation; certificates of either root verify against the bundle', async () => {
    const next = await generateRootCa({ commonName: 'next root' });
    const bundle = `${root.certificatePem}${next.certificatePem}`;
    const oldCa = await MeshCa.load({ ...root, trustBundlePem: bundle }, options);
    const newCa = await MeshCa.load({ ...next, trustBundlePem: bundle }, options);
    const fromOld = await oldCa.issue((await generateWorkloadKey('a')).csrPem, 'a');
    const fromNew = await newCa.issue((await generateWorkloadKey('a')).csrPem, 'a');
    expect(fromNew.trustBundlePem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(verifiesAgainst(fromOld.chainPem, fromNew.trustBundlePem)).toBe(true);
    expect(verifiesAgainst(fromNew.chainPem, fromOld.trustBundlePem)).toBe(true);
    expect(verifiesAgainst(fromNew.chainPem, root.certificatePem)).toBe(false);
  });

  it('refuses CSRs it must not sign, naming why', async () => {
    const ca = await MeshCa.load(root, options);
    await expect(ca.issue('not a csr', 'a')).rejects.toThrow(CsrError);
    // A CSR whose signature does not match its key (a tampered request).
    const good = await generateWorkloadKey('a');
    const der = Buffer.from(good.csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 5]! ^= 0xff;
    await expect(ca.issue(toPem(der, 'CERTIFICATE REQUEST'), 'a')).rejects.toThrow(/signature does not verify|not a PEM/);
    // A weak RSA key.
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    const keys = {
      privateKey: await webcrypto.subtle.importKey('pkcs8', weak.privateKey.export({ type: 'pkcs8', format: 'der' }), alg, true, ['sign']),
      publicKey: await webcrypto.subtle.importKey('spki', weak.publicKey.export({ type: 'spki', format: 'der' }), alg, true, ['verify']),
    };
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=a', keys, signingAlgorithm: alg });
    await expect(ca.issue(csr.toString('pem'), 'a')).rejects.toThrow(/at least 2048 bits/);
  });

  it('refuses CA material it cannot use', async () => {
    const other = await generateRootCa({ commonName: 'other' });
    await expect(MeshCa.load({ certificatePem: root.certificatePem, keyPem: other.keyPem }, options)).rejects.toThrow(/does not belong/);
    const intermediate = await intermediateOf(root);
    await expect(MeshCa.load(intermediate, options)).rejects.toThrow(/not a self-signed root/);
    await expect(MeshCa.load({ ...intermediate, trustBundlePem: other.certificatePem }, options)).rejects.toThrow(CaMaterialError);
    const leaf = await (await MeshCa.load(root, options)).issue((await generateWorkloadKey('a')).csrPem, 'a');
    await expect(MeshCa.load({ certificatePem: leaf.certificatePem, keyPem: root.keyPem }, options)).rejects.toThrow(/not a CA/);
  });
});
