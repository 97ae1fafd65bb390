// authz's own TLS: the certificate it serves on its ext_authz gRPC port and its
// mTLS token port, and the roots it verifies callers' client certificates
// against. The certificate is the operator's (TRELLIS_TLS_CERT_FILE/KEY_FILE,
// which must carry spiffe://<td>/trellis/authz for mesh clients that pin it) or,
// by default, one authz issues itself from its mesh CA for that identity, with a
// key that never leaves the process. The client roots are
// TRELLIS_TLS_CLIENT_CA_FILE or the mesh CA's trust bundle (two roots during a
// CA rotation). refresh() re-reads the files, renews a self-issued certificate
// at half-life and follows the CA's bundle; listeners (the gRPC credentials, the
// HTTPS server) get each change, and a refresh that fails keeps what works.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type { experimental } from '@grpc/grpc-js';
import type { MeshCa } from '@trellis/pki';
import { generateWorkloadKey } from '@trellis/pki';
import type { Logger } from '@trellis/runtime';
import type { AuthzMetrics } from '../metrics';

export interface TlsMaterial {
  /** authz's certificate and its intermediates (PEM). */
  certificateChainPem: string;
  privateKeyPem: string;
  /** The roots a client certificate must chain to (PEM). */
  clientCaPem: string;
}

export interface ServingTlsSource {
  describe: string;
  /** The material to serve now, given what is served (undefined at start); the same object when nothing changed. */
  next(current: TlsMaterial | undefined): Promise<TlsMaterial>;
}

/** Operator files, re-read on each refresh. `clientCa` is a file, or the mesh CA's bundle. */
export function tlsFilesSource(certFile: string, keyFile: string, clientCa: string | (() => MeshCa | undefined)): ServingTlsSource {
  return {
    describe: `${certFile} (client roots: ${typeof clientCa === 'string' ? clientCa : 'the mesh CA trust bundle'})`,
    async next(current) {
      const material: TlsMaterial = {
        certificateChainPem: await readFile(certFile, 'utf8'),
        privateKeyPem: await readFile(keyFile, 'utf8'),
        clientCaPem: await clientRoots(clientCa),
      };
      return current && sameMaterial(current, material) ? current : material;
    },
  };
}

/**
 * A certificate authz issues itself from its mesh CA for spiffe://<td>/trellis/authz:
 * renewed at half its life, or as soon as the CA's trust bundle changes.
 */
export function selfIssuedSource(
  ca: () => MeshCa | undefined,
  clientCaFile: string | undefined,
  clock: () => number = Date.now,
): ServingTlsSource {
  let issuedFor: { bundle: string; renewAt: number } | undefined;
  return {
    describe: `a certificate from authz's own mesh CA (client roots: ${clientCaFile ?? 'the mesh CA trust bundle'})`,
    async next(current) {
      const meshCa = ca();
      if (!meshCa) throw new Error('the mesh CA is not loaded');
      const clientCaPem = await clientRoots(clientCaFile ?? ca);
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

async function clientRoots(source: string | (() => MeshCa | undefined)): Promise<string> {
  if (typeof source === 'string') return readFile(source, 'utf8');
  const ca = source();
  if (!ca) throw new Error('no client roots: the mesh CA is not loaded and TRELLIS_TLS_CLIENT_CA_FILE is not set');
  return ca.trustBundlePem;
}

function sameMaterial(a: TlsMaterial, b: TlsMaterial): boolean {
  return a.certificateChainPem === b.certificateChainPem && a.privateKeyPem === b.privateKeyPem && a.clientCaPem === b.clientCaPem;
}

/** Refuses material no TLS server could use: a key that is not the certificate's, unreadable PEM, no roots. */
export function checkTlsMaterial(material: TlsMaterial): void {
  const leaf = new X509Certificate(material.certificateChainPem);
  if (!leaf.checkPrivateKey(createPrivateKey(material.privateKeyPem))) throw new Error(`the key does not belong to ${leaf.subject}`);
  if (!material.clientCaPem.includes('BEGIN CERTIFICATE')) throw new Error('the client roots hold no PEM certificate');
  createSecureContext({ cert: material.certificateChainPem, key: material.privateKeyPem, ca: material.clientCaPem });
}

/**
 * The current material, handed to grpc-js as a certificate provider (both the
 * identity and the roots) and to any other listener.
 */
export class ServingTls implements experimental.CertificateProvider {
  private readonly caListeners = new Set<experimental.CaCertificateUpdateListener>();
  private readonly identityListeners = new Set<experimental.IdentityCertificateUpdateListener>();
  private readonly changeListeners = new Set<(material: TlsMaterial) => void>();

  private constructor(
    private current: TlsMaterial,
    private readonly source: ServingTlsSource,
    private readonly metrics: AuthzMetrics,
    private readonly logger: Logger,
  ) {}

  static async start(source: ServingTlsSource, metrics: AuthzMetrics, logger: Logger): Promise<ServingTls> {
    const material = await source.next(undefined);
    checkTlsMaterial(material);
    logger.info({ source: source.describe, ...describe(material) }, 'authz serves TLS and verifies client certificates');
    return new ServingTls(material, source, metrics, logger);
  }

  get material(): TlsMaterial {
    return this.current;
  }

  /** Picks up rotated files, renews a self-issued certificate when due; keeps the current material when that fails. */
  async refresh(): Promise<void> {
    try {
      const next = await this.source.next(this.current);
      if (next === this.current) {
        this.metrics.tlsReloads.inc({ result: 'unchanged' });
        return;
      }
      checkTlsMaterial(next);
      this.current = next;
      this.metrics.tlsReloads.inc({ result: 'changed' });
      this.logger.info(describe(next), "authz's serving certificate or client roots changed");
      for (const listener of this.caListeners) listener({ caCertificate: Buffer.from(next.clientCaPem) });
      for (const listener of this.identityListeners)
        listener({ certificate: Buffer.from(next.certificateChainPem), privateKey: Buffer.from(next.privateKeyPem) });
      for (const listener of this.changeListeners) listener(next);
    } catch (err) {
      this.metrics.tlsReloads.inc({ result: 'error' });
      this.logger.error({ err }, "refreshing authz's TLS material failed; keeping the current one");
    }
  }

  onChange(listener: (material: TlsMaterial) => void): void {
    this.changeListeners.add(listener);
  }

  addCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    // Asynchronously, like grpc-js's own providers: the server registers its watcher only after adding this listener.
    process.nextTick(listener, { caCertificate: Buffer.from(this.current.clientCaPem) });
  }

  removeCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener);
    process.nextTick(listener, {
      certificate: Buffer.from(this.current.certificateChainPem),
      privateKey: Buffer.from(this.current.privateKeyPem),
    });
  }

  removeIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener);
  }
}

function describe(material: TlsMaterial): Record<string, unknown> {
  const leaf = new X509Certificate(material.certificateChainPem);
  return { subjectAltName: leaf.subjectAltName, notAfter: new Date(leaf.validTo).toISOString() };
}
