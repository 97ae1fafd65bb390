// The one implementation of "give this Envoy sidecar its bootstrap": fetch
// GET /bootstrap/{service} from the control plane, fill the xDS token placeholder
// when the control plane admits only authenticated proxies, and write the file
// atomically. `trellis bootstrap SERVICE -o FILE` runs it once (systemd
// ExecStartPre=, the Helm init container); `trellis agent --envoy-bootstrap FILE`
// renders it before registering and again before the token runs out.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { sidecarSdsFiles, XDS_TOKEN_AUDIENCE } from '@trellis/mesh-schema';
import { MeshTokenClient, MeshTokenError, type CertificateFiles } from '@trellis/sdk-node';
import { Backoff } from '../agent/backoff';

export const XDS_TOKEN_PLACEHOLDER = '${TRELLIS_XDS_TOKEN}';

export interface BootstrapRequest {
  controlPlaneUrl: string;
  service: string;
  nodeId: string;
  appPort: number;
  locality?: { region?: string; zone?: string; subZone?: string };
  adminPort?: number;
  /** This sidecar's own outbound listener port, when another sidecar on the host takes the mesh-wide one. */
  outboundPort?: number;
  /** A port where GET /ready answers once Envoy has loaded its config (a Kubernetes startup probe). */
  readyPort?: number;
  format?: 'yaml' | 'json';
  /** Where this host keeps the xDS CA and client certificate, when the control plane serves xDS over TLS. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string; serverName?: string };
}

export interface XdsTokenSource {
  /**
   * A fresh token from authz's POST /v1/token: authz's mTLS port (https://…:8443) and the workload certificate
   * the agent keeps (production: authz takes the service from the certificate), or — only an authz run with
   * TRELLIS_ALLOW_INSECURE_CALLERS — its HTTP port and the service's secret.
   */
  authz?: XdsTokenAuthz;
  /** A static token (a credential file), used when authz is not configured or cannot issue one. */
  staticToken?: string;
  /** The admin token (the CLI context's): reads the bootstrap when there is no xDS token; never filled in. */
  adminToken?: string;
}

export type XdsTokenAuthz = { url: string; certificates: CertificateFiles } | { url: string; secret: string };

export interface RenderedBootstrap {
  text: string;
  /** When the filled-in xDS token expires (absent: no token, or a static one). */
  tokenExpiresAt?: Date;
}

export function bootstrapUrl(req: BootstrapRequest): string {
  const query = new URLSearchParams({ node: req.nodeId, app_port: String(req.appPort), format: req.format ?? 'yaml' });
  const set = (key: string, value: string | number | undefined) => value !== undefined && value !== '' && query.set(key, String(value));
  set('region', req.locality?.region);
  set('zone', req.locality?.zone);
  set('sub_zone', req.locality?.subZone);
  set('admin_port', req.adminPort);
  set('outbound_port', req.outboundPort);
  set('ready_port', req.readyPort);
  set('ca_file', req.tls?.caFile);
  set('cert_file', req.tls?.certFile);
  set('key_file', req.tls?.keyFile);
  set('server_name', req.tls?.serverName);
  return `${req.controlPlaneUrl.replace(/\/+$/, '')}/bootstrap/${encodeURIComponent(req.service)}?${query}`;
}

/**
 * Why a bootstrap could not be rendered. `retryable`: the answer may change by itself —
 * the control plane is unreachable, not ready, or does not know the service yet (404:
 * the service is declared after its sidecars start, as a late seed step does).
 */
export class BootstrapError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'BootstrapError';
  }
}

/** Statuses worth asking again for: not known yet, not ready, overloaded, a proxy in between failing. */
const RETRYABLE_STATUS = new Set([404, 408, 425, 429, 500, 502, 503, 504]);

/**
 * Fetches and fills the bootstrap; throws a BootstrapError saying what is missing or who
 * refused. The xDS token is obtained first: it is also what the control plane asks for
 * before it hands out the service's bootstrap (unless it admits insecure xDS clients).
 */
export async function renderEnvoyBootstrap(req: BootstrapRequest, tokens: XdsTokenSource = {}): Promise<RenderedBootstrap> {
  let token: { token: string; expiresAt?: Date } | undefined;
  let authzError: string | undefined;
  let authzUnreachable = false;
  if (tokens.authz) {
    try {
      token = await fetchXdsToken(tokens.authz, req.service);
    } catch (err) {
      authzError = (err as Error).message;
      authzUnreachable = !(err instanceof BootstrapError) || err.retryable;
    }
  }
  if (!token && tokens.staticToken) token = { token: tokens.staticToken.trim() };
  if (token && !/^[A-Za-z0-9._~+/=-]+$/.test(token.token))
    throw new BootstrapError('the xDS token has characters a bearer token cannot have', false);

  const url = bootstrapUrl(req);
  let res: Response;
  let body: string;
  try {
    const reader = token?.token ?? tokens.adminToken;
    res = await fetch(url, { headers: reader ? { authorization: `Bearer ${reader}` } : {}, signal: AbortSignal.timeout(10_000) });
    body = await res.text();
  } catch (err) {
    throw new BootstrapError(`GET ${url}: ${causeOf(err)}`, true);
  }
  if (res.status === 401 && !token && authzError)
    throw new BootstrapError(`GET ${url}: 401, and authz issued no xDS token (${authzError})`, authzUnreachable);
  if (!res.ok) throw new BootstrapError(`GET ${url}: ${res.status} ${problemDetail(body)}`, RETRYABLE_STATUS.has(res.status));
  if (!body.includes(XDS_TOKEN_PLACEHOLDER)) return { text: body };
  if (!token) {
    throw new BootstrapError(
      `the control plane requires an xDS token, and ${
        authzError ? `authz issued none (${authzError})` : 'no authz URL and service secret are configured'
      } and no static xDS token is given (--xds-token-file)`,
      authzUnreachable,
    );
  }
  return { text: body.split(XDS_TOKEN_PLACEHOLDER).join(token.token), ...(token.expiresAt ? { tokenExpiresAt: token.expiresAt } : {}) };
}

/**
 * POST {authz}/v1/token as the service, for the audience reserved for xDS streams, with sdk-node's
 * MeshTokenClient: over mTLS with the workload certificate files, or with the service's secret.
 */
export async function fetchXdsToken(authz: XdsTokenAuthz, service: string): Promise<{ token: string; expiresAt: Date }> {
  const client = new MeshTokenClient({
    authzUrl: authz.url,
    service,
    ...('certificates' in authz ? { certificates: authz.certificates } : { secret: authz.secret }),
    requestTimeoutMs: 10_000,
  });
  let token: string;
  try {
    token = await client.getToken(XDS_TOKEN_AUDIENCE);
  } catch (err) {
    // A refusal is retried only when waiting can fix it; an unreachable authz (no status) is retried.
    if (err instanceof MeshTokenError && err.status !== undefined)
      throw new BootstrapError(`POST /v1/token: ${err.message}`, RETRYABLE_STATUS.has(err.status) && err.status !== 404);
    throw err;
  }
  const { exp } = decodeJwt(token);
  return { token, expiresAt: new Date(exp! * 1000) };
}

export interface RetryPolicy {
  /** Give up once this long has passed since the first attempt (0: a single attempt). */
  retryForMs: number;
  /** Told before each wait, for a log line. */
  onRetry?: (err: BootstrapError, delayMs: number) => void;
  backoff?: Backoff;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * renderEnvoyBootstrap, asked again with exponential backoff and jitter while the
 * failure is retryable and time is left: a sidecar started before the control plane,
 * or before its service is declared, waits instead of failing its unit or pod.
 */
export function renderEnvoyBootstrapRetrying(
  req: BootstrapRequest,
  tokens: XdsTokenSource,
  policy: RetryPolicy,
): Promise<RenderedBootstrap> {
  return retrying(() => renderEnvoyBootstrap(req, tokens), policy);
}

/** Runs `attempt` until it succeeds, a failure is not retryable, or the policy's time is up. */
export async function retrying<T>(attempt: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  const backoff = policy.backoff ?? new Backoff({ baseMs: 500, maxMs: 10_000 });
  const sleep = policy.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const giveUpAt = Date.now() + policy.retryForMs;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      const failure = err instanceof BootstrapError ? err : new BootstrapError(causeOf(err), true);
      const delay = backoff.next();
      if (!failure.retryable || Date.now() + delay > giveUpAt) {
        if (!failure.retryable || backoff.failures === 1) throw failure;
        throw new BootstrapError(`${failure.message} (gave up after ${backoff.failures} attempts)`, false);
      }
      policy.onRetry?.(failure, delay);
      await sleep(delay);
    }
  }
}

/** Writes beside the target and renames, so Envoy never reads half a file. Unchanged content is not rewritten. */
export async function writeAtomically(path: string, text: string, mode = 0o600): Promise<boolean> {
  const current = await readFile(path, 'utf8').catch(() => undefined);
  if (current === text) return false;
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, path);
  return true;
}

/**
 * The SDS files an Envoy sidecar's TLS contexts name (@trellis/mesh-contracts
 * sidecar-certificates.ts), written into `dir`: this process's view of the directory
 * where the agent keeps the workload certificate, which Envoy sees at
 * SIDECAR_CERTIFICATE_DIR. Each is written by rename, a move event Envoy reloads on.
 * They name files, hold no secret.
 */
export async function writeSidecarSdsFiles(dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  for (const file of sidecarSdsFiles()) {
    const path = join(dir, file.fileName);
    await writeAtomically(path, file.text, 0o644);
    written.push(path);
  }
  return written;
}

export function basicCredential(service: string, secret: string): string {
  return `Basic ${Buffer.from(`${service}:${secret}`, 'utf8').toString('base64')}`;
}

/** fetch's own message is "fetch failed"; the cause says what (ECONNREFUSED, a timeout). */
export function causeOf(err: unknown): string {
  const error = err as Error & { cause?: { message?: string; code?: string } };
  return error.cause?.code ?? error.cause?.message ?? error.message ?? String(err);
}

function problemDetail(body: string): string {
  try {
    const problem = JSON.parse(body) as { title?: string; detail?: string };
    return [problem.title, problem.detail].filter(Boolean).join(': ');
  } catch {
    return body.slice(0, 200);
  }
}
