// A server's own TLS that follows its source without a restart: the certificate
// it serves and the roots it verifies client certificates against (authz's ports,
// the control plane's xDS port). refresh() (a poll, SIGHUP) reads the source again;
// material that no TLS server could use (unreadable PEM, a key that is not the
// certificate's, roots that hold no certificate) is refused and the last good one
// keeps serving: never no TLS, never a half-applied pair. Listeners (grpc-js as a
// certificate provider, an HTTPS server's setSecureContext) get each change, which
// applies to new connections; established ones keep the handshake they made.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { experimental, type ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from '../logger';

export interface TlsMaterial {
  /** The server's certificate and its intermediates (PEM). */
  certificateChainPem: string;
  privateKeyPem: string;
  /** The roots a client certificate must chain to (PEM); absent: client certificates are not asked for. */
  clientCaPem?: string;
}

export interface TlsMaterialSource {
  describe: string;
  /** The material to serve now, given what is served (undefined at start); the same object when nothing changed. */
  next(current: TlsMaterial | undefined): Promise<TlsMaterial>;
}

/** What one refresh did: changed (new material serves), unchanged, error (the previous material stays in use). */
export type TlsRefreshResult = 'changed' | 'unchanged' | 'error';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** A file, or where the roots come from otherwise (authz: its mesh CA's trust bundle; throws when there is none). */
  clientCa?: string | (() => string);
}

/** Operator files, all read again on each refresh. */
export function tlsFilesSource(files: TlsFiles): TlsMaterialSource {
  const { certFile, keyFile, clientCa } = files;
  const roots = clientCa === undefined ? 'none' : typeof clientCa === 'string' ? clientCa : 'the mesh CA trust bundle';
  return {
    describe: `${certFile} (client roots: ${roots})`,
    async next(current) {
      // Read one after the other: a Secret volume's `..data` swap between them gives a pair that checkTlsMaterial
      // refuses (key not the certificate's), and the next refresh reads the consistent new pair.
      const material: TlsMaterial = {
        certificateChainPem: await readFile(certFile, 'utf8'),
        privateKeyPem: await readFile(keyFile, 'utf8'),
        ...(clientCa === undefined ? {} : { clientCaPem: typeof clientCa === 'string' ? await readFile(clientCa, 'utf8') : clientCa() }),
      };
      return current && sameMaterial(current, material) ? current : material;
    },
  };
}

function sameMaterial(a: TlsMaterial, b: TlsMaterial): boolean {
  return a.certificateChainPem === b.certificateChainPem && a.privateKeyPem === b.privateKeyPem && a.clientCaPem === b.clientCaPem;
}

/** Refuses material no TLS server could use: a key that is not the certificate's, unreadable PEM, roots without a certificate. */
export function checkTlsMaterial(material: TlsMaterial): void {
  const leaf = new X509Certificate(material.certificateChainPem);
  if (!leaf.checkPrivateKey(createPrivateKey(material.privateKeyPem))) throw new Error(`the key does not belong to ${leaf.subject}`);
  if (material.clientCaPem !== undefined && !material.clientCaPem.includes('BEGIN CERTIFICATE'))
    throw new Error('the client roots hold no PEM certificate');
  createSecureContext({ cert: material.certificateChainPem, key: material.privateKeyPem, ca: material.clientCaPem });
}

export interface ServingTlsOptions {
  /** Whose TLS this is, in logs ("authz", "the xDS port"). */
  name: string;
  logger: Logger;
  /** Each refresh's result (a `..._tls_reloads_total{result}` counter). */
  onRefresh?: (result: TlsRefreshResult) => void;
}

/**
 * TLS material as a grpc-js certificate provider: the identity and, when the material has
 * client roots, the roots, handed to each listener when it registers and on every update().
 * ServingTls feeds it from its source; authz's Check worker from the main thread's messages.
 */
export class TlsMaterialProvider implements experimental.CertificateProvider {
  private readonly caListeners = new Set<experimental.CaCertificateUpdateListener>();
  private readonly identityListeners = new Set<experimental.IdentityCertificateUpdateListener>();

  constructor(private current: TlsMaterial) {}

  get material(): TlsMaterial {
    return this.current;
  }

  /** New connections use `material`; established ones keep the handshake they made. */
  update(material: TlsMaterial): void {
    this.current = material;
    for (const listener of this.caListeners) listener(caUpdateOf(material));
    for (const listener of this.identityListeners) listener(identityUpdateOf(material));
  }

  addCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    // Asynchronously, like grpc-js's own providers: the server registers its watcher only after adding this listener.
    process.nextTick(listener, caUpdateOf(this.current));
  }

  removeCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener);
    process.nextTick(listener, identityUpdateOf(this.current));
  }

  removeIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener);
  }
}

/**
 * The current material from a source that refresh() reads again, handed to grpc-js as a
 * certificate provider (TlsMaterialProvider) and to any other listener (onChange).
 */
export class ServingTls extends TlsMaterialProvider {
  private readonly changeListeners = new Set<(material: TlsMaterial) => void>();
  private refreshing?: Promise<TlsRefreshResult>;

  private constructor(
    material: TlsMaterial,
    private readonly source: TlsMaterialSource,
    private readonly options: ServingTlsOptions,
  ) {
    super(material);
  }

  /** Reads the source once; its errors throw (a server must not start without the TLS it was configured with). */
  static async start(source: TlsMaterialSource, options: ServingTlsOptions): Promise<ServingTls> {
    const material = await source.next(undefined);
    checkTlsMaterial(material);
    options.logger.info(
      { source: source.describe, ...describe(material) },
      material.clientCaPem === undefined ? `${options.name} serves TLS` : `${options.name} serves TLS and verifies client certificates`,
    );
    return new ServingTls(material, source, options);
  }

  /**
   * grpc-js server credentials that follow this material (bindGrpcServer applies each change to its TLS listeners).
   * Client certificates are asked for when the material has client roots, and required when `requireClientCertificate`.
   */
  serverCredentials(requireClientCertificate: boolean): ServerCredentials {
    // grpc-js 1.14 declares the parameters as (ca, identity) but hands them to its constructor as (identity, ca):
    // the first is the identity provider, the second (null: no client certificates asked for) the roots.
    return experimental.createCertificateProviderServerCredentials(
      this,
      this.material.clientCaPem === undefined ? null : this,
      requireClientCertificate,
    );
  }

  /** Reads the source again (the poll, SIGHUP); keeps the current material when that fails. Concurrent calls share one read. */
  refresh(): Promise<TlsRefreshResult> {
    this.refreshing ??= this.readAgain().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  onChange(listener: (material: TlsMaterial) => void): void {
    this.changeListeners.add(listener);
  }

  private async readAgain(): Promise<TlsRefreshResult> {
    const { name, logger, onRefresh } = this.options;
    let result: TlsRefreshResult;
    try {
      const next = await this.source.next(this.material);
      if (next === this.material) {
        result = 'unchanged';
      } else {
        checkTlsMaterial(next);
        result = 'changed';
        logger.info(describe(next), `${name}: the serving certificate or client roots changed; new connections use them`);
        this.update(next);
        for (const listener of this.changeListeners) listener(next);
      }
    } catch (err) {
      result = 'error';
      logger.error({ err, source: this.source.describe }, `${name}: reloading the TLS material failed; keeping the current one`);
    }
    onRefresh?.(result);
    return result;
  }
}

/** No roots: null, which leaves a grpc-js server that expects them without a secure context (it serves nothing: fail closed). */
export function caUpdateOf(material: TlsMaterial): experimental.CaCertificateUpdate | null {
  return material.clientCaPem === undefined ? null : { caCertificate: Buffer.from(material.clientCaPem) };
}

export function identityUpdateOf(material: TlsMaterial): experimental.IdentityCertificateUpdate {
  return { certificate: Buffer.from(material.certificateChainPem), privateKey: Buffer.from(material.privateKeyPem) };
}

function describe(material: TlsMaterial): Record<string, unknown> {
  const leaf = new X509Certificate(material.certificateChainPem);
  return { subjectAltName: leaf.subjectAltName, notAfter: new Date(leaf.validTo).toISOString() };
}
