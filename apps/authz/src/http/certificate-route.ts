// POST /v1/certificate: the mesh CA's door. A workload proves it is a service —
// on a VM with the service's credential (`Basic service:secret`, the one the
// token endpoint knows), on Kubernetes with a projected ServiceAccount token
// that the service's record names — and sends a CSR; it gets back a certificate
// for spiffe://<trust domain>/svc/<service> and the trust bundle. The private
// key never travels. GET /v1/trust-bundle serves the roots to anyone.
import express, { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { DNS_LABEL, type ServiceCredentials, type ServiceRecord } from '@trellis/mesh-schema';
import { CsrError, type MeshCa } from '@trellis/pki';
import { sendProblem, type Logger } from '@trellis/runtime';
import type { KubernetesIdentity } from '../ca/kubernetes-identity';
import type { AuthzMetrics } from '../metrics';
import { problems } from './problem';

export interface CertificateRouteDeps {
  /** Undefined: no CA is configured and both endpoints answer 404. */
  ca: () => MeshCa | undefined;
  /** Asked on every request: a reloaded set applies at once. */
  credentials: Pick<ServiceCredentials, 'authenticate'> | undefined;
  kubernetes: KubernetesIdentity | undefined;
  services: () => ReadonlyMap<string, { readonly value: ServiceRecord }>;
  metrics: AuthzMetrics;
  logger: Logger;
}

const CertificateRequest = z
  .object({
    csr: z.string().min(1).max(16_384).describe('a PEM PKCS#10 certificate request'),
    /** Which service to act as; required with a Kubernetes token, and must match a VM credential. */
    service: z.string().regex(DNS_LABEL, 'must be a service name (a DNS label)').optional(),
  })
  .strict();

export function certificateRouter(deps: CertificateRouteDeps): Router {
  const router = Router();
  const { metrics } = deps;
  const count = (result: string) => metrics.certificateRequests.inc({ result });

  router.get('/v1/trust-bundle', (_req, res) => {
    const ca = deps.ca();
    if (!ca) return sendProblem(res, problems.caDisabled());
    res.set('Cache-Control', 'public, max-age=60').type('application/x-pem-file').send(ca.trustBundlePem);
  });

  router.post('/v1/certificate', express.json({ limit: '32kb' }), async (req: Request, res: Response) => {
    const ca = deps.ca();
    if (!ca) {
      count('disabled');
      return sendProblem(res, problems.caDisabled());
    }
    const body = CertificateRequest.safeParse(req.body ?? {});
    if (!body.success) {
      count('invalid');
      const issue = body.error.issues[0]!;
      const field = issue.path.join('.') || 'body';
      return sendProblem(res, problems.invalid(field, `${field}: ${issue.message}`));
    }
    const proof = await proveService(req.get('authorization'), body.data.service);
    if (!proof.ok) {
      count(proof.status === 401 ? 'unauthenticated' : 'denied');
      if (proof.status === 401) res.set('WWW-Authenticate', 'Basic realm="trellis-authz", Bearer');
      deps.logger.warn({ reason: proof.reason, service: body.data.service }, 'certificate request refused');
      return sendProblem(res, proof.status === 401 ? problems.unauthenticated(proof.reason) : problems.forbidden(proof.reason));
    }
    try {
      const issued = await ca.issue(body.data.csr, proof.service);
      count('ok');
      metrics.certificatesIssued.inc({ method: proof.method });
      deps.logger.info(
        { service: proof.service, method: proof.method, serial: issued.serialNumber, notAfter: issued.notAfter.toISOString() },
        'workload certificate issued',
      );
      res.set('Cache-Control', 'no-store').json({
        spiffeId: issued.spiffeId,
        certificateChain: issued.chainPem,
        trustBundle: issued.trustBundlePem,
        notBefore: issued.notBefore.toISOString(),
        expiresAt: issued.notAfter.toISOString(),
      });
    } catch (err) {
      if (err instanceof CsrError) {
        count('invalid');
        return sendProblem(res, problems.invalid('csr', err.message));
      }
      deps.logger.error({ err }, 'signing a workload certificate failed');
      count('error');
      sendProblem(res, problems.unavailable('certificate'));
    }
  });

  type Proof = { ok: true; service: string; method: 'credential' | 'kubernetes' } | { ok: false; status: 401 | 403; reason: string };

  async function proveService(authorization: string | undefined, requested: string | undefined): Promise<Proof> {
    if (authorization && /^Bearer /i.test(authorization)) {
      if (!deps.kubernetes)
        return { ok: false, status: 401, reason: 'Kubernetes ServiceAccount tokens are not accepted here (no cluster is configured)' };
      if (!requested) return { ok: false, status: 403, reason: 'service: name the service to act as' };
      const verified = await deps.kubernetes.verify(authorization.slice(7).trim());
      if (!verified.ok) return { ok: false, status: 401, reason: `ServiceAccount token refused: ${verified.reason}` };
      const { namespace, serviceAccount } = verified.account;
      const allowed = deps.services().get(requested)?.value.spec.workloadIdentity?.kubernetes ?? [];
      if (!allowed.some((a) => a.namespace === namespace && a.serviceAccount === serviceAccount))
        return { ok: false, status: 403, reason: `${namespace}/${serviceAccount} may not act as ${requested} (see its workloadIdentity)` };
      return { ok: true, service: requested, method: 'kubernetes' };
    }
    const service = deps.credentials?.authenticate(authorization);
    if (!service)
      return { ok: false, status: 401, reason: 'send Authorization: Basic base64(service:secret) or a Kubernetes ServiceAccount token' };
    if (requested && requested !== service) return { ok: false, status: 403, reason: `the credential is ${service}'s, not ${requested}'s` };
    return { ok: true, service, method: 'credential' };
  }

  return router;
}
