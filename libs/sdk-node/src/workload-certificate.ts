// Obtains and renews this workload's certificate from the mesh CA (authz's
// POST /v1/certificate). A fresh key is made for every certificate and never
// leaves this process except into the 0600 key file; the CA sees only a CSR.
// Renewal happens at half-life with jitter, and a failed renewal is retried
// with backoff while the current certificate is still valid.
import { generateWorkloadKey } from '@trellis/pki';
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
  onRenewed?: (certificate: IssuedWorkloadCertificate) => void;
  onError?: (err: Error) => void;
}

export interface IssuedWorkloadCertificate {
  spiffeId: string;
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

export class WorkloadCertificate {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private current: IssuedWorkloadCertificate | undefined;

  constructor(private readonly options: WorkloadCertificateOptions) {}

  get certificate(): IssuedWorkloadCertificate | undefined {
    return this.current;
  }

  /** Obtains the first certificate (throws if it cannot), then keeps it renewed until stop(). */
  async start(): Promise<IssuedWorkloadCertificate> {
    const issued = await this.renew();
    this.schedule(this.renewalDelay(issued));
    return issued;
  }

  /** Obtains a certificate now and writes it (also what each scheduled renewal does). */
  async renew(): Promise<IssuedWorkloadCertificate> {
    const { options } = this;
    const { keyPem, csrPem } = await generateWorkloadKey(options.service);
    const authorization =
      options.proof.kind === 'credential'
        ? `Basic ${Buffer.from(`${options.service}:${options.proof.secret}`).toString('base64')}`
        : `Bearer ${await options.proof.token()}`;
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
    const files = await writeCertificateFiles(options.dir, {
      certificateChainPem: body.certificateChain,
      privateKeyPem: keyPem,
      trustBundlePem: body.trustBundle,
    });
    this.current = {
      spiffeId: String(body.spiffeId),
      notBefore: new Date(String(body.notBefore)),
      expiresAt: new Date(body.expiresAt),
      files,
    };
    options.onRenewed?.(this.current);
    return this.current;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** Half the lifetime from now, ± jitter. */
  private renewalDelay(issued: IssuedWorkloadCertificate): number {
    const lifetime = issued.expiresAt.getTime() - issued.notBefore.getTime();
    const half = issued.notBefore.getTime() + lifetime / 2 - Date.now();
    const jitter = (this.options.jitter ?? 0.1) * half * (Math.random() * 2 - 1);
    return Math.max(1_000, half + jitter);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.renew().then(
        (issued) => this.schedule(this.renewalDelay(issued)),
        (err: Error) => {
          this.options.onError?.(err);
          // Retry with backoff, but well before the current certificate runs out.
          const left = (this.current?.expiresAt.getTime() ?? Date.now()) - Date.now();
          this.schedule(Math.max(1_000, Math.min(60_000, left / 10)));
        },
      );
    }, delayMs);
    this.timer.unref();
  }
}
