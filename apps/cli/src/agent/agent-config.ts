// `trellis agent` settings: flags, else TRELLIS_* environment (in Kubernetes filled
// from the downward API), checked up front so a bad value stops the agent with a
// message naming it instead of a registration the registry refuses forever.
import { readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { InstanceId, Labels, ServiceName } from '@trellis/mesh-schema';
import { resolveSidecarBootstrapOptions, type SidecarBootstrapFlags, type SidecarBootstrapOptions } from '../bootstrap/sidecar-options';
import { parseHealthCheck, type HealthCheckSpec } from './health-probe';
import type { Registration } from './registration';
import {
  DEFAULT_MAX_STREAMS_PER_UPSTREAM,
  DEFAULT_RELAY_LIMITS,
  parseRelayAddress,
  type RelayAddress,
  type RelayLimits,
} from './xds-relay';

/** What commander hands over (strings as typed); every field may also come from the environment. */
export interface AgentFlags extends SidecarBootstrapFlags {
  service?: string;
  instanceId?: string;
  address?: string;
  port?: string;
  region?: string;
  zone?: string;
  subZone?: string;
  label?: string[];
  platform?: string;
  weight?: string;
  registry?: string;
  credentialFile?: string;
  healthCheck?: string;
  healthInterval?: string;
  healthTimeout?: string;
  failureThreshold?: string;
  successThreshold?: string;
  ttl?: string;
  drain?: string;
  httpHost?: string;
  httpPort?: string;
  logLevel?: string;
  envoyBootstrap?: string;
  appPort?: string;
  controlPlane?: string;
  authz?: string;
  authzMtls?: string;
  xdsTokenFile?: string;
  certificateDir?: string;
  k8sTokenFile?: string;
  trustBundleRefresh?: string;
  xdsRelay?: string;
  xdsServer?: string;
  xdsServerCaFile?: string;
  xdsServerName?: string;
  xdsRelayStreamsPerConnection?: string;
  xdsRelayMaxStreams?: string;
  xdsRelayMaxClientStreams?: string;
  xdsRelayMaxConnections?: string;
  xdsRelayIdleTimeout?: string;
  grpcBootstrap?: string;
}

export interface AgentConfig {
  service: string;
  registration: Registration;
  registryUrl: string;
  /** The service's secret (the one authz takes on POST /v1/token). */
  secret: string;
  health: HealthCheckSpec;
  healthIntervalMs: number;
  healthTimeoutMs: number;
  failureThreshold: number;
  successThreshold: number;
  heartbeatIntervalMs: number;
  drainMs: number;
  http: { host: string; port: number } | undefined;
  logLevel: string;
  envoy?: {
    bootstrapPath: string;
    appPort: number;
    controlPlaneUrl: string;
    /** authz's HTTP URL: xDS tokens with the service credential, only from an authz that allows insecure callers. */
    authzUrl?: string;
    /** authz's mTLS URL: xDS tokens asked with the workload certificate (needs `certificate`). */
    authzMtlsUrl?: string;
    staticTokenFile?: string;
    /** Admin, outbound and ready ports and xDS TLS files, as `trellis bootstrap` takes them. */
    sidecar: SidecarBootstrapOptions;
  };
  /** The workload certificate from the mesh CA, kept in `dir` (libs/sdk-node's certificate-files layout). */
  certificate?: {
    dir: string;
    authzUrl: string;
    /** Kubernetes: prove the service with this projected ServiceAccount token instead of the credential. */
    kubernetesTokenFile?: string;
    trustBundleRefreshMs: number;
  };
  /** The local xDS relay for proxyless apps (needs the certificate: it is the upstream credential). */
  xdsRelay?: {
    listen: RelayAddress;
    /** The control plane's xDS address, host:port. */
    upstream: string;
    /** CA of the control plane's serving certificate (default: the mesh trust bundle, ca.pem). */
    serverCaFile?: string;
    serverName?: string;
    /** Relayed streams per control-plane connection before the relay opens another (below the control plane's cap). */
    maxStreamsPerUpstream: number;
    /** What local apps may hold of the relay (the rest of RelayLimits keeps its defaults). */
    limits: Pick<RelayLimits, 'maxStreams' | 'maxStreamsPerConnection' | 'maxConnections' | 'maxConnectionIdleMs'>;
    /** Where to write the grpc-js-xds bootstrap naming the relay (handed to the app as GRPC_XDS_BOOTSTRAP). */
    grpcBootstrapPath?: string;
  };
}

export class AgentConfigError extends Error {}

/** Flags first, then the environment, then defaults. */
export function resolveAgentConfig(flags: AgentFlags, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const problems: string[] = [];
  const pick = (flag: string | undefined, name: string) => flag ?? (env[name] || undefined);
  const need = (flag: string | undefined, name: string, what: string): string => {
    const value = pick(flag, name);
    if (!value) problems.push(`${what} is required (--${kebab(what)} or ${name})`);
    return value ?? '';
  };
  const int = (flag: string | undefined, name: string, fallback: number, min: number, max: number, what: string): number => {
    const raw = pick(flag, name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max)
      problems.push(`${what} (${name}) must be a whole number from ${min} to ${max}, got "${raw}"`);
    return value;
  };
  const seconds = (flag: string | undefined, name: string, fallback: number, what: string): number => {
    const raw = pick(flag, name);
    if (raw === undefined) return fallback * 1000;
    const value = parseDuration(raw);
    if (value === undefined) problems.push(`${what} (${name}) must be a duration such as 10s, 500ms or 2m, got "${raw}"`);
    return value ?? 0;
  };

  const service = need(flags.service, 'TRELLIS_SERVICE', 'service');
  if (service && !ServiceName.safeParse(service).success) problems.push(`service "${service}" is not a service name (a DNS label)`);
  const instanceId = pick(flags.instanceId, 'TRELLIS_INSTANCE_ID') ?? hostname();
  if (!InstanceId.safeParse(instanceId).success)
    problems.push(`instance id "${instanceId}" (TRELLIS_INSTANCE_ID) is not a valid instance id`);
  const address = pick(flags.address, 'TRELLIS_ADDRESS') ?? defaultAddress();
  const port = int(flags.port, 'TRELLIS_PORT', 0, 1, 65535, 'port');
  if (!pick(flags.port, 'TRELLIS_PORT')) problems.push('port is required (--port or TRELLIS_PORT): where callers reach this instance');
  const platform = pick(flags.platform, 'TRELLIS_PLATFORM') ?? (env['KUBERNETES_SERVICE_HOST'] ? 'k8s' : 'vm');
  if (platform !== 'vm' && platform !== 'k8s') problems.push(`platform must be vm or k8s, got "${platform}"`);
  const labels = parseLabels([...(env['TRELLIS_LABELS']?.split(',').filter(Boolean) ?? []), ...(flags.label ?? [])], problems);
  const ttlSeconds = int(flags.ttl, 'TRELLIS_TTL_SECONDS', 15, 5, 3600, 'ttl');
  const registryUrl = need(flags.registry, 'TRELLIS_REGISTRY_URL', 'registry');

  let health: HealthCheckSpec = { kind: 'none' };
  const healthCheck = pick(flags.healthCheck, 'TRELLIS_HEALTH_CHECK') ?? (port ? `tcp://127.0.0.1:${port}` : 'none');
  try {
    health = parseHealthCheck(healthCheck);
  } catch (err) {
    problems.push(`health check (TRELLIS_HEALTH_CHECK): ${(err as Error).message}`);
  }

  const secret = readSecret(flags.credentialFile, env, problems);
  const httpPortRaw = pick(flags.httpPort, 'TRELLIS_AGENT_HTTP_PORT') ?? '15020';
  const http =
    httpPortRaw === 'off'
      ? undefined
      : { host: pick(flags.httpHost, 'TRELLIS_AGENT_HTTP_HOST') ?? '0.0.0.0', port: int(httpPortRaw, '-', 15020, 0, 65535, 'http port') };

  let envoy: AgentConfig['envoy'];
  const bootstrapPath = pick(flags.envoyBootstrap, 'TRELLIS_ENVOY_BOOTSTRAP');
  if (bootstrapPath) {
    const appPort = int(flags.appPort, 'TRELLIS_APP_PORT', 0, 1, 65535, 'app port');
    if (!appPort)
      problems.push('--envoy-bootstrap needs the app port (--app-port or TRELLIS_APP_PORT): where the app listens on 127.0.0.1');
    const controlPlaneUrl = need(flags.controlPlane, 'TRELLIS_CONTROL_PLANE_URL', 'control-plane');
    const authzUrl = pick(flags.authz, 'TRELLIS_AUTHZ_URL');
    const authzMtlsUrl = pick(flags.authzMtls, 'TRELLIS_AUTHZ_MTLS_URL');
    if (authzMtlsUrl && !/^https:\/\//.test(authzMtlsUrl))
      problems.push(`--authz-mtls must be authz's https:// mTLS URL (port 8443 by default), got "${authzMtlsUrl}"`);
    if (authzMtlsUrl && !pick(flags.certificateDir, 'TRELLIS_CERTIFICATE_DIR'))
      problems.push('--authz-mtls needs --certificate-dir: the workload certificate is what authz takes the service from');
    const staticTokenFile = pick(flags.xdsTokenFile, 'TRELLIS_XDS_TOKEN_FILE') ?? credentialPath(env, 'xds-token');
    const sidecar = resolveSidecarBootstrapOptions(flags, env, problems);
    envoy = {
      bootstrapPath,
      appPort,
      controlPlaneUrl,
      sidecar,
      ...(authzUrl ? { authzUrl } : {}),
      ...(authzMtlsUrl ? { authzMtlsUrl } : {}),
      ...(staticTokenFile ? { staticTokenFile } : {}),
    };
  }

  let certificate: AgentConfig['certificate'];
  const certificateDir = pick(flags.certificateDir, 'TRELLIS_CERTIFICATE_DIR');
  if (certificateDir) {
    const authzUrl = pick(flags.authz, 'TRELLIS_AUTHZ_URL');
    if (!authzUrl) problems.push("--certificate-dir needs authz's HTTP URL (--authz or TRELLIS_AUTHZ_URL): the mesh CA");
    const kubernetesTokenFile = pick(flags.k8sTokenFile, 'TRELLIS_K8S_TOKEN_FILE');
    certificate = {
      dir: certificateDir,
      authzUrl: authzUrl ?? '',
      ...(kubernetesTokenFile ? { kubernetesTokenFile } : {}),
      trustBundleRefreshMs: seconds(flags.trustBundleRefresh, 'TRELLIS_TRUST_BUNDLE_REFRESH', 300, 'trust bundle refresh'),
    };
  }

  let xdsRelay: AgentConfig['xdsRelay'];
  const relayAddress = pick(flags.xdsRelay, 'TRELLIS_XDS_RELAY');
  if (relayAddress) {
    let listen: RelayAddress | undefined;
    try {
      listen = parseRelayAddress(relayAddress);
    } catch (err) {
      problems.push(`xDS relay (TRELLIS_XDS_RELAY): ${(err as Error).message}`);
    }
    if (!certificate)
      problems.push('--xds-relay needs --certificate-dir: the relay reaches the control plane with the workload certificate');
    const upstream = need(flags.xdsServer, 'TRELLIS_XDS_SERVER', 'xds server');
    if (upstream && !/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(upstream))
      problems.push(`xDS server (TRELLIS_XDS_SERVER) must be host:port, got "${upstream}"`);
    const serverCaFile = pick(flags.xdsServerCaFile, 'TRELLIS_XDS_SERVER_CA_FILE');
    const serverName = pick(flags.xdsServerName, 'TRELLIS_XDS_SERVER_NAME');
    const grpcBootstrapPath = pick(flags.grpcBootstrap, 'TRELLIS_GRPC_BOOTSTRAP');
    const maxStreamsPerUpstream = int(
      flags.xdsRelayStreamsPerConnection,
      'TRELLIS_XDS_RELAY_STREAMS_PER_CONNECTION',
      DEFAULT_MAX_STREAMS_PER_UPSTREAM,
      1,
      1000,
      'xDS relay streams per connection',
    );
    const limits = {
      maxStreams: int(
        flags.xdsRelayMaxStreams,
        'TRELLIS_XDS_RELAY_MAX_STREAMS',
        DEFAULT_RELAY_LIMITS.maxStreams,
        1,
        10_000,
        'xDS relay max streams',
      ),
      maxStreamsPerConnection: int(
        flags.xdsRelayMaxClientStreams,
        'TRELLIS_XDS_RELAY_MAX_CLIENT_STREAMS',
        DEFAULT_RELAY_LIMITS.maxStreamsPerConnection,
        1,
        1000,
        'xDS relay max client streams',
      ),
      maxConnections: int(
        flags.xdsRelayMaxConnections,
        'TRELLIS_XDS_RELAY_MAX_CONNECTIONS',
        DEFAULT_RELAY_LIMITS.maxConnections,
        1,
        10_000,
        'xDS relay max connections',
      ),
      maxConnectionIdleMs: seconds(
        flags.xdsRelayIdleTimeout,
        'TRELLIS_XDS_RELAY_IDLE_TIMEOUT',
        DEFAULT_RELAY_LIMITS.maxConnectionIdleMs / 1000,
        'xDS relay idle timeout',
      ),
    };
    // As the apps' TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS: less than a second would close connections between streams.
    if (limits.maxConnectionIdleMs !== 0 && limits.maxConnectionIdleMs < 1000)
      problems.push(`xDS relay idle timeout (TRELLIS_XDS_RELAY_IDLE_TIMEOUT) must be 0 (never) or at least 1s`);
    if (listen)
      xdsRelay = {
        listen,
        upstream,
        ...(serverCaFile ? { serverCaFile } : {}),
        ...(serverName ? { serverName } : {}),
        maxStreamsPerUpstream,
        limits,
        ...(grpcBootstrapPath ? { grpcBootstrapPath } : {}),
      };
  } else if (pick(flags.grpcBootstrap, 'TRELLIS_GRPC_BOOTSTRAP')) {
    problems.push('--grpc-bootstrap names the relay: it needs --xds-relay');
  }

  const config: AgentConfig = {
    service,
    registration: {
      id: instanceId,
      address,
      port,
      labels,
      locality: {
        region: pick(flags.region, 'TRELLIS_REGION') ?? '',
        zone: pick(flags.zone, 'TRELLIS_ZONE') ?? '',
        subZone: pick(flags.subZone, 'TRELLIS_SUB_ZONE') ?? '',
      },
      platform: platform as 'vm' | 'k8s',
      weight: int(flags.weight, 'TRELLIS_WEIGHT', 1, 1, 128, 'weight'),
      ttlSeconds,
    },
    registryUrl,
    secret,
    health,
    healthIntervalMs: seconds(flags.healthInterval, 'TRELLIS_HEALTH_INTERVAL', 2, 'health interval'),
    healthTimeoutMs: seconds(flags.healthTimeout, 'TRELLIS_HEALTH_TIMEOUT', 1, 'health timeout'),
    failureThreshold: int(flags.failureThreshold, 'TRELLIS_HEALTH_FAILURE_THRESHOLD', 3, 1, 100, 'failure threshold'),
    successThreshold: int(flags.successThreshold, 'TRELLIS_HEALTH_SUCCESS_THRESHOLD', 1, 1, 100, 'success threshold'),
    // Three heartbeats per TTL: one lost heartbeat never costs the lease.
    heartbeatIntervalMs: Math.max(1000, Math.floor((ttlSeconds * 1000) / 3)),
    drainMs: seconds(flags.drain, 'TRELLIS_DRAIN', 10, 'drain period'),
    http,
    logLevel: pick(flags.logLevel, 'TRELLIS_LOG_LEVEL') ?? 'info',
    ...(envoy ? { envoy } : {}),
    ...(certificate ? { certificate } : {}),
    ...(xdsRelay ? { xdsRelay } : {}),
  };
  if (problems.length) throw new AgentConfigError(`invalid agent configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  return config;
}

/** `10s`, `500ms`, `2m`, or a bare number of seconds. */
export function parseDuration(value: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  if (!match) return undefined;
  const n = Number(match[1]);
  return Math.round(match[2] === 'ms' ? n : match[2] === 'm' ? n * 60_000 : n * 1000);
}

function parseLabels(pairs: string[], problems: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      problems.push(`label "${pair}" is not key=value`);
      continue;
    }
    labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  const parsed = Labels.safeParse(labels);
  if (!parsed.success) problems.push(`labels: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return labels;
}

/**
 * The service secret: --credential-file / TRELLIS_SERVICE_SECRET_FILE, else systemd's
 * $CREDENTIALS_DIRECTORY/service-secret (LoadCredential=), else TRELLIS_SERVICE_SECRET.
 */
function readSecret(flag: string | undefined, env: NodeJS.ProcessEnv, problems: string[]): string {
  const file = flag ?? env['TRELLIS_SERVICE_SECRET_FILE'] ?? credentialPath(env, 'service-secret');
  if (file) {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      problems.push(`the service secret file ${file} cannot be read: ${(err as Error).message}`);
      return '';
    }
  }
  const secret = env['TRELLIS_SERVICE_SECRET'];
  if (!secret)
    problems.push(
      "the service's credential is required: --credential-file, TRELLIS_SERVICE_SECRET_FILE, a systemd credential named service-secret, or TRELLIS_SERVICE_SECRET",
    );
  return secret ?? '';
}

function credentialPath(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const dir = env['CREDENTIALS_DIRECTORY'];
  if (!dir) return undefined;
  const path = join(dir, name);
  try {
    readFileSync(path);
    return path;
  } catch {
    return undefined;
  }
}

/** The first non-internal IPv4 address (a VM's own), else loopback. */
function defaultAddress(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

function kebab(what: string): string {
  return what.replace(/ /g, '-');
}
