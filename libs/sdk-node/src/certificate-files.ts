// The workload certificate on disk, as grpc-js-xds's file_watcher certificate
// provider (and Envoy's path-based SDS) read it: three files in one directory.
// They change together: each version is written into a new directory and the
// `..data` symlink is swapped to it with one rename (the layout Kubernetes uses
// for Secret volumes), so a reader never mixes one version's certificate with
// another's key except across that single rename.
import { mkdir, readlink, rename, rm, symlink, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { WORKLOAD_CERTIFICATE_FILES } from '@trellis/mesh-contracts';

export interface CertificateFiles {
  dir: string;
  /** The workload certificate and its intermediates (PEM). */
  certificateFile: string;
  /** Its private key (PKCS#8 PEM), mode 0600. */
  privateKeyFile: string;
  /** The trust bundle: the mesh roots (PEM). */
  caCertificateFile: string;
}

export interface CertificateMaterial {
  certificateChainPem: string;
  privateKeyPem: string;
  trustBundlePem: string;
}

// Shared with the Envoy sidecar's SDS files (@trellis/mesh-contracts sidecar-certificates).
const NAMES = {
  certificateFile: WORKLOAD_CERTIFICATE_FILES.certificate,
  privateKeyFile: WORKLOAD_CERTIFICATE_FILES.privateKey,
  caCertificateFile: WORKLOAD_CERTIFICATE_FILES.trustBundle,
} as const;
const DATA_LINK = '..data';

export function certificateFilesIn(dir: string): CertificateFiles {
  return {
    dir,
    certificateFile: join(dir, NAMES.certificateFile),
    privateKeyFile: join(dir, NAMES.privateKeyFile),
    caCertificateFile: join(dir, NAMES.caCertificateFile),
  };
}

/** Writes a new version of the three files and switches to it at once; older versions are removed. */
export async function writeCertificateFiles(dir: string, material: CertificateMaterial): Promise<CertificateFiles> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const version = `..${new Date().toISOString().replace(/[:.]/g, '_')}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const versionDir = join(dir, version);
  await mkdir(versionDir, { mode: 0o700 });
  await writeFile(join(versionDir, NAMES.privateKeyFile), material.privateKeyPem, { mode: 0o600 });
  await writeFile(join(versionDir, NAMES.certificateFile), material.certificateChainPem, { mode: 0o644 });
  await writeFile(join(versionDir, NAMES.caCertificateFile), material.trustBundlePem, { mode: 0o644 });

  const previous = await readlink(join(dir, DATA_LINK)).catch(() => undefined);
  const tmpLink = join(dir, `${DATA_LINK}_tmp`);
  await rm(tmpLink, { force: true });
  await symlink(version, tmpLink);
  await rename(tmpLink, join(dir, DATA_LINK));
  // The stable names point through ..data once and never change.
  for (const name of Object.values(NAMES)) {
    const link = join(dir, name);
    const target = join(DATA_LINK, name);
    if ((await readlink(link).catch(() => undefined)) !== target) {
      await rm(link, { force: true });
      await symlink(target, link);
    }
  }
  // Keep the previous version a little: a reader that resolved ..data just before the swap still finds its files.
  for (const entry of await readdir(dir)) {
    if (entry.startsWith('..') && entry !== DATA_LINK && entry !== version && entry !== previous && !entry.endsWith('_tmp')) {
      await rm(join(dir, entry), { recursive: true, force: true });
    }
  }
  return certificateFilesIn(dir);
}
