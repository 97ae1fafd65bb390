// The agent's part of workload identity: the certificate from the mesh CA, kept
// renewed in the directory the app (grpc-js-xds file_watcher), Envoy (path-based
// SDS) and the SDK's token client read. The one implementation of obtaining and
// renewing is @trellis/sdk-node's WorkloadCertificate; this file only wires it to
// the agent's settings, logs and metrics.
import { readFile } from 'node:fs/promises';
import { pemCertificates } from '@trellis/pki';
import { WorkloadCertificate, type IssuedWorkloadCertificate, type WorkloadProof } from '@trellis/sdk-node';
import type { Logger } from '@trellis/runtime';
import type { AgentConfig } from './agent-config';
import type { AgentMetrics } from './metrics';

export function createWorkloadCertificate(
  config: Pick<AgentConfig, 'service' | 'secret'> & { certificate: NonNullable<AgentConfig['certificate']> },
  logger: Logger,
  metrics: AgentMetrics,
  /** Called after new files are in place (a certificate or a bundle): TLS users re-read them. */
  onFilesChanged: () => void = () => undefined,
): WorkloadCertificate {
  const { certificate } = config;
  const tokenFile = certificate.kubernetesTokenFile;
  // The kubelet rotates the projected token in place: read it for every request.
  const proof: WorkloadProof = tokenFile
    ? { kind: 'kubernetes', token: () => readFile(tokenFile, 'utf8') }
    : { kind: 'credential', secret: config.secret };
  let bundleRoots = 0;
  return new WorkloadCertificate({
    authzUrl: certificate.authzUrl,
    service: config.service,
    proof,
    dir: certificate.dir,
    trustBundleRefreshMs: certificate.trustBundleRefreshMs,
    retry: { baseMs: 1_000, maxMs: 60_000 },
    onRenewed: (issued: IssuedWorkloadCertificate) => {
      metrics.certificatesIssued.inc();
      metrics.certificateExpiry.set(issued.expiresAt.getTime() / 1000);
      void readFile(issued.files.caCertificateFile, 'utf8').then(
        (bundle) => metrics.trustBundleRoots.set((bundleRoots = pemCertificates(bundle).length)),
        () => undefined,
      );
      logger.info(
        { spiffeId: issued.spiffeId, serial: issued.serialNumber, expiresAt: issued.expiresAt.toISOString(), dir: certificate.dir },
        'workload certificate written',
      );
      onFilesChanged();
    },
    onTrustBundleChanged: (roots) => {
      metrics.trustBundleRoots.set(roots);
      logger.info({ roots, previousRoots: bundleRoots }, 'trust bundle changed; files rewritten');
      bundleRoots = roots;
      onFilesChanged();
    },
    onError: (err, { attempt, retryInMs }) => {
      metrics.certificateErrors.inc({ attempt });
      logger.warn({ err: err.message, attempt, retryInMs }, 'the mesh CA could not be reached or refused; keeping the held certificate');
    },
  });
}
