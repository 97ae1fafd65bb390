// A sidecar's first workload certificate, obtained before its bootstrap. The Helm
// sidecar's init container runs before the agent container, yet it must present a
// workload certificate to authz's mTLS port for the bootstrap's xDS token (a
// production authz issues none on its plain port), and Envoy's TLS contexts name the
// certificate from its first second. So the init container obtains one into the pod's
// shared certificate volume, proven exactly as the agent proves itself (the service
// credential, or the projected ServiceAccount token), and the agent keeps it renewed
// there — as Consul's connect-inject init container logs in before Envoy starts and
// leaves what it got in a volume the sidecar shares.
import { WorkloadCertificate, WorkloadCertificateError, type IssuedWorkloadCertificate, type WorkloadProof } from '@trellis/sdk-node';
import { BootstrapError, causeOf, retrying, type RetryPolicy } from './envoy-bootstrap';

export interface FirstCertificateRequest {
  /** authz's HTTP URL: the mesh CA's POST /v1/certificate. */
  caUrl: string;
  service: string;
  proof: WorkloadProof;
  /** The certificate directory the agent keeps renewed (libs/sdk-node certificate-files layout). */
  dir: string;
}

/** A refusal waiting cannot change (bad credential, a service the proof does not name) stops at once. */
const RETRYABLE_CA_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

/** Obtains one certificate now (a fresh key; only a CSR goes to the mesh CA) and writes it into `dir`. */
export async function obtainFirstCertificate(req: FirstCertificateRequest): Promise<IssuedWorkloadCertificate> {
  const certificate = new WorkloadCertificate({ authzUrl: req.caUrl, service: req.service, proof: req.proof, dir: req.dir });
  try {
    return await certificate.renew();
  } catch (err) {
    // A refusal (with its status) or an answer that is not a usable certificate (without one).
    if (err instanceof WorkloadCertificateError)
      throw new BootstrapError(err.message, err.status !== undefined && RETRYABLE_CA_STATUS.has(err.status));
    // No answer at all (authz not up yet, DNS, a timeout): worth waiting for.
    throw new BootstrapError(`POST ${new URL('/v1/certificate', req.caUrl).href}: ${causeOf(err)}`, true);
  }
}

/** obtainFirstCertificate, asked again with backoff while the failure is retryable and the policy allows. */
export function obtainFirstCertificateRetrying(req: FirstCertificateRequest, policy: RetryPolicy): Promise<IssuedWorkloadCertificate> {
  return retrying(() => obtainFirstCertificate(req), policy);
}
