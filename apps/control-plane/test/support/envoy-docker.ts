// What the real-Envoy (Docker) suites share: the image, whether a Docker engine is
// configured, the workload certificate directory each sidecar mounts (written as the
// agent and `trellis bootstrap` write it), and starting Envoy with a bootstrap.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type * as Testcontainers from 'testcontainers';
import type { StartedTestContainer } from 'testcontainers';
import { SIDECAR_CERTIFICATE_DIR, sidecarSdsFiles } from '@trellis/mesh-schema';
import { generateWorkloadKey, type MeshCa } from '@trellis/pki';
import { writeCertificateFiles } from '@trellis/sdk-node';
import { dockerAvailable } from '@trellis/testing';

export const ENVOY_IMAGE = process.env['TRELLIS_TEST_ENVOY_IMAGE'] ?? 'envoyproxy/envoy:v1.32-latest';
export const dockerConfigured = Boolean(process.env['DOCKER_HOST']) || existsSync('/var/run/docker.sock');

/** Fails loudly when a socket exists but no engine answers (a skipped suite would hide it). */
export async function requireDocker(): Promise<typeof Testcontainers> {
  if (!(await dockerAvailable(10_000))) throw new Error('a Docker socket exists but no engine answers; start Docker or unset DOCKER_HOST');
  // Loaded only when Docker answers, so machines without it never pay for testcontainers.
  return import('testcontainers').catch((err: unknown) => {
    throw new Error(`testcontainers failed to load on Node ${process.version}: ${err instanceof Error ? err.message : String(err)}`);
  });
}

/**
 * A sidecar's certificate directory as the agent leaves it: a key made here, a
 * certificate from the mesh CA for `service`, the trust bundle, in the `..data`
 * layout, and the two SDS files beside them. Envoy mounts it at SIDECAR_CERTIFICATE_DIR.
 */
export async function writeSidecarCertificates(dir: string, ca: MeshCa, service: string): Promise<{ certPem: string; keyPem: string }> {
  const key = await generateWorkloadKey(service);
  const issued = await ca.issue(key.csrPem, service);
  await writeCertificateFiles(dir, { certificateChainPem: issued.chainPem, privateKeyPem: key.keyPem, trustBundlePem: ca.trustBundlePem });
  for (const file of sidecarSdsFiles()) await writeFile(join(dir, file.fileName), file.text, { mode: 0o644 });
  return { certPem: issued.chainPem, keyPem: key.keyPem };
}

/**
 * How a container on Docker's default bridge reaches this host: docker0's address
 * where there is one (a local engine on Linux), else Docker's host-gateway name.
 */
export function hostAddressForContainers(): { host: string; extraHosts: Array<{ host: string; ipAddress: string }> } {
  const docker0 = networkInterfaces()['docker0']?.find((a) => a.family === 'IPv4');
  if (docker0) return { host: docker0.address, extraHosts: [] };
  return { host: 'host.docker.internal', extraHosts: [{ host: 'host.docker.internal', ipAddress: 'host-gateway' }] };
}

export interface EnvoyContainerOptions {
  bootstrap: string;
  /** `.yaml` or `.json`: Envoy picks the parser by extension. */
  bootstrapFormat: 'yaml' | 'json';
  /** The sidecar's certificate directory on this host, mounted read-only at SIDECAR_CERTIFICATE_DIR. */
  certificateDir: string;
  /** Host networking, or the default bridge with these container ports published. */
  network: { host: true } | { host: false; exposedPorts: number[]; extraHosts: Array<{ host: string; ipAddress: string }> };
}

export async function startEnvoy(testcontainers: typeof Testcontainers, options: EnvoyContainerOptions): Promise<StartedTestContainer> {
  const { GenericContainer, Wait } = testcontainers;
  const config = `/etc/envoy/trellis.${options.bootstrapFormat}`;
  let container = new GenericContainer(ENVOY_IMAGE)
    .withCopyContentToContainer([{ content: options.bootstrap, target: config }])
    .withBindMounts([{ source: options.certificateDir, target: SIDECAR_CERTIFICATE_DIR, mode: 'ro' }])
    // The key file is 0600 and owned by this test's user: Envoy reads it as root, as an agent sharing its user would let it.
    .withEnvironment({ ENVOY_UID: '0' })
    .withCommand(['envoy', '-c', config, '--log-level', 'info'])
    .withWaitStrategy(Wait.forLogMessage(/starting main dispatch loop/))
    .withStartupTimeout(120_000);
  container = options.network.host
    ? container.withNetworkMode('host')
    : container.withExposedPorts(...options.network.exposedPorts).withExtraHosts(options.network.extraHosts);
  return container.start();
}
