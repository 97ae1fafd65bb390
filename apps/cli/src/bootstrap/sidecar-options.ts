// The per-sidecar settings of an Envoy bootstrap — its admin, outbound and ready
// ports and where the host keeps the xDS TLS files — defined once for both commands
// that render one: `trellis bootstrap` (systemd ExecStartPre=, the Helm init
// container) and `trellis agent --envoy-bootstrap`. Same flags, same TRELLIS_*
// variables (the sidecar unit's environment file records the ports), same checks,
// so the two render the same bootstrap for the same host.
import { Option, type Command } from 'commander';
import type { BootstrapRequest } from './envoy-bootstrap';

/** The flags as commander hands them over (strings as typed). */
export interface SidecarBootstrapFlags {
  adminPort?: string;
  outboundPort?: string;
  readyPort?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export type SidecarBootstrapOptions = Pick<BootstrapRequest, 'adminPort' | 'outboundPort' | 'readyPort' | 'tls'>;

const PORTS = [
  {
    key: 'adminPort',
    flag: '--admin-port',
    env: 'TRELLIS_ENVOY_ADMIN_PORT',
    help: "Envoy's admin port on 127.0.0.1 (default the mesh's, 15000)",
  },
  {
    key: 'outboundPort',
    flag: '--outbound-port',
    env: 'TRELLIS_OUTBOUND_PORT',
    help:
      "the outbound listener's port on 127.0.0.1, where the app sends its calls (default the mesh's, 15001); " +
      'each sidecar on one host needs its own admin and outbound port',
  },
  {
    key: 'readyPort',
    flag: '--ready-port',
    env: 'TRELLIS_ENVOY_READY_PORT',
    help: 'serve GET /ready on this port of every address, answering 200 once Envoy has loaded its listeners (a startup probe)',
  },
] as const;

const TLS_FILES = [
  { key: 'caFile', flag: '--ca-file', env: 'TRELLIS_XDS_CA_FILE', help: 'xDS over TLS: the CA file on the sidecar host' },
  { key: 'certFile', flag: '--cert-file', env: 'TRELLIS_XDS_CERT_FILE', help: 'xDS over TLS: the client certificate' },
  { key: 'keyFile', flag: '--key-file', env: 'TRELLIS_XDS_KEY_FILE', help: 'xDS over TLS: the client key' },
] as const;

/** Adds the options to a command; `prefix` precedes each help text (the agent's "with --envoy-bootstrap: "). */
export function addSidecarBootstrapOptions(command: Command, prefix = ''): Command {
  for (const { key, flag, env, help } of [...PORTS, ...TLS_FILES]) {
    const value = key.endsWith('Port') ? '<port>' : '<path>';
    command.addOption(new Option(`${flag} ${value}`, `${prefix}${help}`).env(env));
  }
  return command;
}

/**
 * Flags first, then the environment (commander fills it from the same variables; the agent's
 * config also resolves without commander). Each bad value adds a problem naming it.
 */
export function resolveSidecarBootstrapOptions(
  flags: SidecarBootstrapFlags,
  env: NodeJS.ProcessEnv,
  problems: string[],
): SidecarBootstrapOptions {
  const pick = (flag: string | undefined, name: string) => flag ?? (env[name] || undefined);
  const options: SidecarBootstrapOptions = {};
  for (const { key, flag, env: name } of PORTS) {
    const raw = pick(flags[key], name);
    if (raw === undefined || raw === '') continue;
    const port = Number(raw);
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      problems.push(`${flag} (${name}) must be a port from 1 to 65535, got "${raw}"`);
    else options[key] = port;
  }
  const tls: NonNullable<SidecarBootstrapOptions['tls']> = {};
  for (const { key, env: name } of TLS_FILES) {
    const path = pick(flags[key], name);
    if (path) tls[key] = path;
  }
  if (Object.keys(tls).length > 0) options.tls = tls;
  return options;
}
