// Obtains and renews this workload's certificate from the mesh CA (authz's
// POST /v1/certificate). A fresh key is made for every certificate and never
// leaves this process except into the 0600 key file; the CA sees only a CSR.
// Renewal happens at half-life with jitter; a failed attempt is retried with
// exponential backoff (full jitter) while the held certificate stays in place.
// Between renewals the trust bundle is fetched (GET /v1/trust-bundle) so a
// second root added for a CA rotation reaches the files within minutes, not at
// the next renewal. `trellis agent` runs this; an SDK user may run it in-process.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { generateWorkloadKey, pemCertificates } from '@trellis/pki';
import { writeCertificateFiles, type CertificateFiles } from './certificate-files';

export type WorkloadProof =
  /** A VM: the service's credential (the same one the token endpoint takes). */
  | { kind: 'credential'; secret: string }
  /** Kubernetes: the projected ServiceAccount token (read fresh each time: the kubelet rotates it). */
  | { kind: 'kubernetes'; token: () => Promise<string> };

export interface WorkloadCertificateOptions {
  /** authz's HTTP base URL. */
  authzUrl: string;
  service: string;
  proof: WorkloadProof;
  /** Where the certificate files go (see certificate-files.ts). */
  dir: string;
  requestTimeoutMs?: number;
  /** ± this share of the renewal delay is random, so a fleet does not renew at once (default 0.1). */
  jitter?: number;
  /** Backoff after a failed attempt: full jitter under base·2^n, capped (default 1 s … 60 s). */
  retry?: { baseMs: number; maxMs: number };
  /** How often the trust bundle is fetched between renewals (default 5 min; 0: only with each renewal). */
  trustBundleRefreshMs?: number;
  onRenewed?: (certificate: IssuedWorkloadCertificate) => void;
  onTrustBundleChanged?: (roots: number) => void;
  onError?: (err: Error, context: { attempt: 'certificate' | 'trust-bundle'; retryInMs: number }) => void;
}

export interface IssuedWorkloadCertificate {
  spiffeId: string;
  serialNumber: string;
  notBefore: Date;
  expiresAt: Date;
  files: CertificateFiles;
}

export class WorkloadCertificateError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'WorkloadCertificateError';
  }
}

/** What is on disk now: kept so the trust bundle can be swapped without a new certificate. */
interface Held {
  issued: IssuedWorkloadCertificate;
  certificateChainPem: string;
  privateKeyPem: string;
  trustBundlePem: string;
}

const DEFAULT_RETRY = { baseMs: 1_000, maxMs: 60_000 };
const DEFAULT_TRUST_BUNDLE_REFRESH_MS = 5 * 60_000;

export class WorkloadCertificate {
  private renewTimer: NodeJS.Timeout | undefined;
  private bundleTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private held: Held | undefined;
  private failures = 0;
  private wake: (() => void) | undefined;

  constructor(private readonly options: WorkloadCertificateOptions) {}

  get certificate(): IssuedWorkloadCertificate | undefined {
    return this.held?.issued;
  }

  /** Obtains the first certificate (throws if it cannot), then keeps it renewed until stop(). */
  async start(): Promise<IssuedWorkloadCertificate> {
    const issued = await this.renew();
    this.scheduleRenewal(renewalDelay(issued, this.options.jitter ?? 0.1));
    this.scheduleBundleRefresh();
    return issued;
  }

  /**
   * Like start(), but a refused or failed first attempt is retried with backoff until
   * one succeeds (what an agent wants: authz may start after it). Rejects only on stop().
   */
  async keepRenewed(): Promise<IssuedWorkloadCertificate> {
    for (;;) {
      if (this.stopped) throw new WorkloadCertificateError('stopped before a certificate was issued');
      try {
        return await this.start();
      } catch (err) {
        if (this.stopped) throw err;
        const retryInMs = this.nextRetryDelay();
        this.options.onError?.(err as Error, { attempt: 'certificate', retryInMs });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, retryInMs);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }
  }

  /** Obtains a certificate now and writes it (also what each scheduled renewal does). */
  async renew(): Promise<IssuedWorkloadCertificate> {
    const { options } = this;
    const { keyPem, csrPem } = await generateWorkloadKey(options.service);
    const authorization =
      options.proof.kind === 'credential'
        ? `Basic ${Buffer.from(`${options.service}:${options.proof.secret}`).toString('base64')}`
        : `Bearer ${(await options.proof.token()).trim()}`;
    const res = await fetch(new URL('/v1/certificate', options.authzUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization },
      body: JSON.stringify({ csr: csrPem, service: options.service }),
      signal: AbortSignal.timeout(options.requestTimeoutMs ?? 5_000),
    });
    if (!res.ok) {
      const detail = await res.text().catch(() => '');
      throw new WorkloadCertificateError(
        `the mesh CA refused a certificate for ${options.service}: ${res.status} ${detail.slice(0, 300)}`,
        res.status,
      );
    }
    const body = (await res.json()) as {
      spiffeId?: unknown;
      certificateChain?: unknown;
      trustBundle?: unknown;
      notBefore?: unknown;
      expiresAt?: unknown;
    };
    if (typeof body.certificateChain !== 'string' || typeof body.trustBundle !== 'string' || typeof body.expiresAt !== 'string')
      throw new WorkloadCertificateError('the mesh CA answered without a certificate chain, trust bundle or expiry');
    const leaf = new X509Certificate(body.certificateChain);
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem)))
      throw new WorkloadCertificateError('the mesh CA answered with a certificate for another key');
    if (!chainsToBundle(body.certificateChain, body.trustBundle))
      throw new WorkloadCertificateError('the certificate the mesh CA issued does not chain to the trust bundle it sent');
    const files = await writeCertificateFiles(options.dir, {
      certificateChainPem: body.certificateChain,
      privateKeyPem: keyPem,
      trustBundlePem: body.trustBundle,
    });
    const issued: IssuedWorkloadCertificate = {
      spiffeId: String(body.spiffeId),
      serialNumber: leaf.serialNumber,
      notBefore: new Date(leaf.validFrom),
      expiresAt: new Date(leaf.validTo),
      files,
    };
    this.held = { issued, certificateChainPem: body.certificateChain, privateKeyPem: keyPem, trustBundlePem: body.trustBundle };
    this.failures = 0;
    options.onRenewed?.(issued);
    return issued;
  }

  /**
   * Fetches the trust bundle; when it changed, rewrites the files with it (same key and
   * certificate). If the held certificate no longer chains to it — the old root was
   * removed before this workload renewed — renews at once. Returns whether it changed.
   */
  async refreshTrustBundle(): Promise<boolean> {
    const held = this.held;
    if (!held) return false;
    const res = await fetch(new URL('/v1/trust-bundle', this.options.authzUrl), {
      signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 5_000),
    });
    if (!res.ok) throw new WorkloadCertificateError(`the mesh CA's trust bundle is unavailable: ${res.status}`, res.status);
    const bundle = await res.text();
    const roots = pemCertificates(bundle);
    if (roots.length === 0) throw new WorkloadCertificateError('the mesh CA served a trust bundle without certificates');
    if (sameCertificates(roots, pemCertificates(held.trustBundlePem))) return false;
    if (!chainsToBundle(held.certificateChainPem, bundle)) {
      await this.renew();
      this.scheduleRenewal(renewalDelay(this.held!.issued, this.options.jitter ?? 0.1));
    } else {
      await writeCertificateFiles(this.options.dir, {
        certificateChainPem: held.certificateChainPem,
        privateKeyPem: held.privateKeyPem,
        trustBundlePem: bundle,
      });
      this.held = { ...held, trustBundlePem: bundle };
    }
    this.options.onTrustBundleChanged?.(roots.length);
    return true;
  }

  stop(): void {
    this.stopped = true;
    if (this.renewTimer) clearTimeout(this.renewTimer);
    if (this.bundleTimer) clearTimeout(this.bundleTimer);
    this.wake?.();
  }

  /** Full jitter under base·2^failures, never past a quarter of the held certificate's remaining life. */
  private nextRetryDelay(): number {
    const { baseMs, maxMs } = this.options.retry ?? DEFAULT_RETRY;
    const cap = Math.min(maxMs, baseMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    const left = this.held ? this.held.issued.expiresAt.getTime() - Date.now() : Infinity;
    const delay = Math.max(cap * 0.1, Math.random() * cap);
    return Math.max(Math.min(baseMs, maxMs), Math.min(delay, left / 4));
  }

  private scheduleRenewal(delayMs: number): void {
    if (this.stopped) return;
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = setTimeout(() => {
      this.renew().then(
        (issued) => this.scheduleRenewal(renewalDelay(issued, this.options.jitter ?? 0.1)),
        (err: Error) => {
          // The held certificate stays on disk and in use; try again soon.
          const retryInMs = this.nextRetryDelay();
          this.options.onError?.(err, { attempt: 'certificate', retryInMs });
          this.scheduleRenewal(retryInMs);
        },
      );
    }, delayMs);
    this.renewTimer.unref();
  }

  private scheduleBundleRefresh(): void {
    const every = this.options.trustBundleRefreshMs ?? DEFAULT_TRUST_BUNDLE_REFRESH_MS;
    if (this.stopped || every <= 0) return;
    this.bundleTimer = setTimeout(() => {
      this.refreshTrustBundle().then(
        () => this.scheduleBundleRefresh(),
        (err: Error) => {
          this.options.onError?.(err, { attempt: 'trust-bundle', retryInMs: every });
          this.scheduleBundleRefresh();
        },
      );
    }, every);
    this.bundleTimer.unref();
  }
}

/** Half the lifetime from its start, ± jitter of that delay, measured from now. */
export function renewalDelay(issued: Pick<IssuedWorkloadCertificate, 'notBefore' | 'expiresAt'>, jitter: number, now = Date.now()): number {
  const lifetime = issued.expiresAt.getTime() - issued.notBefore.getTime();
  const half = issued.notBefore.getTime() + lifetime / 2 - now;
  const spread = jitter * half * (Math.random() * 2 - 1);
  return Math.max(1_000, half + spread);
}

/** Whether the chain's last certificate is signed by one of the bundle's roots (or is one). */
export function chainsToBundle(chainPem: string, bundlePem: string): boolean {
  const chain = pemCertificates(chainPem).map((pem) => new X509Certificate(pem));
  const top = chain[chain.length - 1];
  if (!top) return false;
  return pemCertificates(bundlePem)
    .map((pem) => new X509Certificate(pem))
    .some((root) => root.fingerprint256 === top.fingerprint256 || (top.checkIssued(root) && top.verify(root.publicKey)));
}

function sameCertificates(a: string[], b: string[]): boolean {
  const prints = (pems: string[]) =>
    pems
      .map((pem) => new X509Certificate(pem).fingerprint256)
      .sort()
      .join();
  return prints(a) === prints(b);
}
