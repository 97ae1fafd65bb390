// `trellis bootstrap SERVICE`: an Envoy sidecar's bootstrap, printed or written to a
// file — what systemd's ExecStartPre= and the Helm init container run.
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { Option } from 'commander';
import { parseDuration } from '../agent/agent-config';
import { SIDECAR_CERTIFICATE_DIR } from '@trellis/mesh-schema';
import { certificateFilesIn, type WorkloadProof } from '@trellis/sdk-node';
import { renderEnvoyBootstrapRetrying, writeAtomically, writeSidecarSdsFiles, type XdsTokenAuthz } from '../bootstrap/envoy-bootstrap';
import { obtainFirstCertificateRetrying } from '../bootstrap/first-certificate';
import { addSidecarBootstrapOptions, resolveSidecarBootstrapOptions, type SidecarBootstrapFlags } from '../bootstrap/sidecar-options';
import { resolveContext } from '../context';
import { CliError } from '../output';

interface BootstrapFlags extends SidecarBootstrapFlags {
  appPort: string;
  node?: string;
  out?: string;
  format: 'yaml' | 'json';
  region?: string;
  zone?: string;
  subZone?: string;
  authz?: string;
  credentialFile?: string;
  xdsTokenFile?: string;
  certificateDir?: string;
  meshCa?: string;
  k8sTokenFile?: string;
  retryFor: string;
}

export function registerBootstrapCommand(program: Command): void {
  const command = program
    .command('bootstrap')
    .summary("render an Envoy sidecar's bootstrap (fills in its xDS token)")
    .description(
      [
        "Fetches SERVICE's Envoy bootstrap from the control plane (GET /bootstrap/SERVICE). When the control plane",
        'admits only authenticated proxies, fills in an xDS token: a fresh one from authz (--authz, its mTLS URL, with',
        'the workload certificate in --certificate-dir), else a static one (--xds-token-file). Writes it atomically with --out.',
        "With --mesh-ca it first obtains that certificate itself (a pod's init container runs before the agent).",
        'While the control plane is unreachable, not ready, or does not know SERVICE yet (404: declared after its',
        'sidecar starts), it asks again with exponential backoff and jitter for up to --retry-for.',
      ]
        .join(' ')
        .replace(/ ?\n ?/g, '\n\n'),
    )
    .argument('<service>', 'mesh service of the sidecar')
    .addOption(
      new Option('--app-port <port>', 'where the app listens on 127.0.0.1 (not the service port)')
        .env('TRELLIS_APP_PORT')
        .makeOptionMandatory(),
    )
    .addOption(new Option('--node <id>', 'node id (default SERVICE.HOSTNAME)').env('TRELLIS_NODE_ID'))
    .addOption(new Option('--out <file>', 'write here instead of stdout'))
    .addOption(new Option('--format <format>', 'yaml or json').choices(['yaml', 'json']).default('yaml'))
    .addOption(new Option('--region <region>').env('TRELLIS_REGION'))
    .addOption(new Option('--zone <zone>').env('TRELLIS_ZONE'))
    .addOption(new Option('--sub-zone <subZone>').env('TRELLIS_SUB_ZONE'));
  addSidecarBootstrapOptions(command)
    .addOption(
      new Option(
        '--authz <url>',
        "authz's mTLS URL (https://…:8443), for a fresh xDS token asked with the workload certificate in --certificate-dir; " +
          'an http:// URL with the service secret only for an authz that allows insecure callers (local development)',
      ).env('TRELLIS_AUTHZ_URL'),
    )
    .addOption(
      new Option('--credential-file <path>', "the service's secret (default: $CREDENTIALS_DIRECTORY/service-secret)").env(
        'TRELLIS_SERVICE_SECRET_FILE',
      ),
    )
    .addOption(
      new Option('--xds-token-file <path>', 'a static xDS token (default: $CREDENTIALS_DIRECTORY/xds-token)').env('TRELLIS_XDS_TOKEN_FILE'),
    )
    .addOption(
      new Option(
        '--certificate-dir <dir>',
        `where the agent keeps the workload certificate (Envoy sees it at ${SIDECAR_CERTIFICATE_DIR}): the SDS files for mTLS are written there`,
      ).env('TRELLIS_CERTIFICATE_DIR'),
    )
    .addOption(
      new Option(
        '--mesh-ca <url>',
        "authz's HTTP URL (http://…:8181, the mesh CA): first obtain the workload certificate into --certificate-dir, " +
          "proven with the service's secret or --k8s-token-file, as the agent does — for a pod's init container, which runs before the agent",
      ).env('TRELLIS_MESH_CA_URL'),
    )
    .addOption(
      new Option(
        '--k8s-token-file <path>',
        "with --mesh-ca: prove the service with this projected ServiceAccount token (audience trellis-ca) instead of the service's secret",
      ).env('TRELLIS_K8S_TOKEN_FILE'),
    )
    .addOption(
      new Option('--retry-for <duration>', 'keep retrying a retryable failure this long (0: once)')
        .env('TRELLIS_BOOTSTRAP_RETRY_FOR')
        .default('2m'),
    )
    .action(async (service: string, flags: BootstrapFlags, cmd: Command) => {
      const context = resolveContext(cmd.optsWithGlobals());
      const appPort = Number(flags.appPort);
      if (!Number.isInteger(appPort) || appPort < 1 || appPort > 65535)
        throw new CliError(`--app-port must be a port, got "${flags.appPort}"`, 2);
      const problems: string[] = [];
      const sidecar = resolveSidecarBootstrapOptions(flags, process.env, problems);
      if (problems.length > 0) throw new CliError(problems.join('\n'), 2);
      const retryForMs = parseDuration(flags.retryFor);
      if (retryForMs === undefined) throw new CliError(`--retry-for must be a duration like 90s or 2m, got "${flags.retryFor}"`, 2);
      const credentials = process.env['CREDENTIALS_DIRECTORY'];
      const secretFile = flags.credentialFile ?? (credentials ? join(credentials, 'service-secret') : undefined);
      const tokenFile = flags.xdsTokenFile ?? (credentials ? join(credentials, 'xds-token') : undefined);
      const secret = secretFile
        ? await readFile(secretFile, 'utf8').then(
            (s) => s.trim(),
            () => undefined,
          )
        : process.env['TRELLIS_SERVICE_SECRET'];
      const staticToken = tokenFile ? await readFile(tokenFile, 'utf8').catch(() => undefined) : undefined;
      const onRetry = (err: Error, delayMs: number) =>
        process.stderr.write(`trellis: bootstrap of ${service}: ${err.message}; retrying in ${(delayMs / 1000).toFixed(1)} s\n`);
      // Before the token: authz's mTLS port takes the service from this certificate, and Envoy's TLS contexts name it.
      if (flags.meshCa) {
        if (!flags.certificateDir) throw new CliError('--mesh-ca needs --certificate-dir: where the workload certificate is written', 2);
        let proof: WorkloadProof;
        if (flags.k8sTokenFile) {
          const tokenFile = flags.k8sTokenFile;
          proof = { kind: 'kubernetes', token: () => readFile(tokenFile, 'utf8') };
        } else if (secret) proof = { kind: 'credential', secret };
        else
          throw new CliError(
            `--mesh-ca needs a proof of the service: its secret (${secretFile ?? 'no --credential-file'} is not readable) or --k8s-token-file`,
            2,
          );
        const issued = await obtainFirstCertificateRetrying(
          { caUrl: flags.meshCa, service, proof, dir: flags.certificateDir },
          { retryForMs, onRetry },
        ).catch((err: Error) => {
          throw new CliError(`workload certificate of ${service}: ${err.message}`);
        });
        process.stderr.write(
          `trellis: workload certificate ${issued.spiffeId} (expires ${issued.expiresAt.toISOString()}) written to ${flags.certificateDir}\n`,
        );
      }
      let authz: XdsTokenAuthz | undefined;
      if (flags.authz && new URL(flags.authz).protocol === 'https:') {
        // Production: authz's mTLS port takes the service from the certificate the agent keeps renewed.
        if (!flags.certificateDir)
          throw new CliError("--authz https://… needs --certificate-dir: the workload certificate presented to authz's mTLS port", 2);
        authz = { url: flags.authz, certificates: certificateFilesIn(flags.certificateDir) };
      } else if (flags.authz && secret) {
        authz = { url: flags.authz, secret };
      } else if (flags.authz) {
        process.stderr.write(`trellis: --authz is set but no service secret is readable (${secretFile ?? 'no --credential-file'})\n`);
      }
      const rendered = await renderEnvoyBootstrapRetrying(
        {
          controlPlaneUrl: context.controlPlaneUrl,
          service,
          nodeId: flags.node ?? `${service}.${hostname()}`,
          appPort,
          format: flags.format,
          locality: { region: flags.region, zone: flags.zone, subZone: flags.subZone },
          ...sidecar,
        },
        {
          ...(authz ? { authz } : {}),
          ...(staticToken ? { staticToken } : {}),
          ...(context.token ? { adminToken: context.token } : {}),
        },
        { retryForMs, onRetry },
      ).catch((err: Error) => {
        throw new CliError(`bootstrap of ${service}: ${err.message}`);
      });
      // Before the bootstrap: Envoy must find the SDS files its first TLS context names.
      if (flags.certificateDir) {
        const written = await writeSidecarSdsFiles(flags.certificateDir).catch((err: Error) => {
          throw new CliError(`SDS files in --certificate-dir ${flags.certificateDir}: ${err.message}`);
        });
        process.stderr.write(`trellis: SDS files written: ${written.join(', ')}\n`);
      }
      if (!flags.out) return void process.stdout.write(rendered.text);
      await writeAtomically(flags.out, rendered.text);
      process.stderr.write(`trellis: ${service} bootstrap written to ${flags.out}\n`);
    });
}
