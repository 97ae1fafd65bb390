// How an Envoy sidecar finds its workload certificate: path-based SDS.
//
// The agent writes the certificate files (cert.pem, key.pem, ca.pem behind a
// `..data` symlink swapped in one rename, the layout of Kubernetes Secret volumes;
// @trellis/sdk-node's certificate-files.ts). Beside them, `trellis bootstrap`
// writes one SDS file per secret (an SDS DiscoveryResponse naming those files).
// The control plane's TLS contexts reference the secrets by these names, over
// `path_config_source` with the directory as `watched_directory`: the `..data`
// rename is a move event in it, so Envoy re-reads the new certificate and key
// together (and checks it read one version of both).
//
// The directory is where Envoy sees it, the same for every sidecar: every proxy of
// a service gets the same resources, and callers of one service share its
// clusters. A VM host running several sidecars binds each one's own directory
// there (systemd BindReadOnlyPaths=); a pod mounts the agent's volume there.

/** The workload certificate directory as Envoy sees it. */
export const SIDECAR_CERTIFICATE_DIR = '/var/run/trellis/workload';

/** File names inside a workload certificate directory (agent and proxyless file_watcher alike). */
export const WORKLOAD_CERTIFICATE_FILES = { certificate: 'cert.pem', privateKey: 'key.pem', trustBundle: 'ca.pem' } as const;

/** SDS secret: this workload's certificate chain and key. */
export const SDS_WORKLOAD_CERTIFICATE = 'trellis-workload-certificate';
/** SDS secret: the mesh roots a peer's certificate must chain to (two during a CA rotation). */
export const SDS_TRUST_BUNDLE = 'trellis-trust-bundle';

export type SidecarSecretName = typeof SDS_WORKLOAD_CERTIFICATE | typeof SDS_TRUST_BUNDLE;

/** The SDS file of a secret, as Envoy sees it. */
export function sidecarSdsPath(secret: SidecarSecretName, dir: string = SIDECAR_CERTIFICATE_DIR): string {
  return `${dir}/${sidecarSdsFileName(secret)}`;
}

export function sidecarSdsFileName(secret: SidecarSecretName): string {
  return `${secret}.sds.json`;
}

const SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

/**
 * The SDS files a sidecar's certificate directory holds: one DiscoveryResponse per
 * secret (Envoy takes exactly one secret per path-based subscription), in Envoy's
 * proto-JSON. `dir` is where Envoy sees the directory; the writer may see it elsewhere.
 */
export function sidecarSdsFiles(dir: string = SIDECAR_CERTIFICATE_DIR): Array<{ fileName: string; text: string }> {
  const file = (name: string) => ({ filename: `${dir}/${name}` });
  const watchedDirectory = { path: dir };
  const secrets = [
    {
      '@type': SECRET_TYPE,
      name: SDS_WORKLOAD_CERTIFICATE,
      tls_certificate: {
        certificate_chain: file(WORKLOAD_CERTIFICATE_FILES.certificate),
        private_key: file(WORKLOAD_CERTIFICATE_FILES.privateKey),
        watched_directory: watchedDirectory,
      },
    },
    {
      '@type': SECRET_TYPE,
      name: SDS_TRUST_BUNDLE,
      validation_context: { trusted_ca: file(WORKLOAD_CERTIFICATE_FILES.trustBundle), watched_directory: watchedDirectory },
    },
  ] as const;
  return secrets.map((secret) => ({
    fileName: sidecarSdsFileName(secret.name),
    text: `${JSON.stringify({ resources: [secret] }, null, 2)}\n`,
  }));
}
