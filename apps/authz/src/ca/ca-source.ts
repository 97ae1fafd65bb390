// Where the mesh CA comes from: files the operator mounts (a Kubernetes Secret
// or any path), systemd credentials (LoadCredential=ca.crt, ca.key and
// optionally ca-bundle.crt), or — for the local mesh only, when asked by
// TRELLIS_CA_DEV_ROOT_DIR — a dev root generated once into that directory.
// Nothing is ever generated silently: without a source the CA is off.
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MeshCa } from '@trellis/pki';
import { loadOrCreateDevRoot, type CaMaterial } from '@trellis/pki';
import type { Logger } from '@trellis/runtime';
import type { AuthzConfig } from '../config';

export interface CaSource {
  /** Where the material comes from, for logs. */
  describe: string;
  read(): Promise<CaMaterial>;
}

/** systemd credential names (`LoadCredential=ca.crt:/etc/trellis/ca.crt` …). */
export const CA_CREDENTIALS = { cert: 'ca.crt', key: 'ca.key', bundle: 'ca-bundle.crt' } as const;

export async function caSourceFromConfig(config: AuthzConfig, logger: Logger): Promise<CaSource | undefined> {
  if (config.TRELLIS_CA_CERT_FILE && config.TRELLIS_CA_KEY_FILE) {
    return filesSource(config.TRELLIS_CA_CERT_FILE, config.TRELLIS_CA_KEY_FILE, config.TRELLIS_CA_TRUST_BUNDLE_FILE);
  }
  const credentials = config.CREDENTIALS_DIRECTORY;
  if (credentials && (await exists(join(credentials, CA_CREDENTIALS.cert)))) {
    const bundle = join(credentials, CA_CREDENTIALS.bundle);
    return filesSource(
      join(credentials, CA_CREDENTIALS.cert),
      join(credentials, CA_CREDENTIALS.key),
      (await exists(bundle)) ? bundle : undefined,
    );
  }
  if (config.TRELLIS_CA_DEV_ROOT_DIR) {
    const root = await loadOrCreateDevRoot(config.TRELLIS_CA_DEV_ROOT_DIR);
    logger.warn(
      { dir: config.TRELLIS_CA_DEV_ROOT_DIR, created: root.created },
      'mesh CA signs with a local development root (TRELLIS_CA_DEV_ROOT_DIR): never use this outside a developer machine',
    );
    return filesSource(root.certFile, root.keyFile, config.TRELLIS_CA_TRUST_BUNDLE_FILE);
  }
  return undefined;
}

function filesSource(certFile: string, keyFile: string, bundleFile: string | undefined): CaSource {
  return {
    describe: bundleFile ? `${certFile} (trust bundle ${bundleFile})` : certFile,
    read: async () => ({
      certificatePem: await readFile(certFile, 'utf8'),
      keyPem: await readFile(keyFile, 'utf8'),
      trustBundlePem: bundleFile ? await readFile(bundleFile, 'utf8') : undefined,
    }),
  };
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/**
 * The CA as currently configured, re-read on `reload()` (a rotated Secret, a new
 * trust bundle with a second root). A reload that fails keeps the working CA.
 */
export class ReloadingCa {
  private constructor(
    private current: MeshCa,
    private readonly source: CaSource,
    private readonly build: (material: CaMaterial) => Promise<MeshCa>,
    private readonly logger: Logger,
  ) {}

  static async start(source: CaSource, build: (material: CaMaterial) => Promise<MeshCa>, logger: Logger): Promise<ReloadingCa> {
    const ca = await build(await source.read());
    logger.info({ source: source.describe, trustDomain: ca.trustDomain, notAfter: ca.notAfter.toISOString() }, 'mesh CA loaded');
    return new ReloadingCa(ca, source, build, logger);
  }

  get ca(): MeshCa {
    return this.current;
  }

  async reload(): Promise<void> {
    try {
      const next = await this.build(await this.source.read());
      if (next.trustBundlePem !== this.current.trustBundlePem || next.notAfter.getTime() !== this.current.notAfter.getTime()) {
        this.logger.info({ notAfter: next.notAfter.toISOString() }, 'mesh CA reloaded');
      }
      this.current = next;
    } catch (err) {
      this.logger.error({ err }, 'reloading the mesh CA failed; keeping the current one');
    }
  }
}
