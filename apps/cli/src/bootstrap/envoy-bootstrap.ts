// The one implementation of "give this Envoy sidecar its bootstrap": fetch
// GET /bootstrap/{service} from the control plane, fill the xDS token placeholder
// when the control plane admits only authenticated proxies, and write the file
// atomically. `trellis bootstrap SERVICE -o FILE` runs it once (systemd
// ExecStartPre=, the Helm init container); `trellis agent --envoy-bootstrap FILE`
// renders it before registering and again before the token runs out.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { XDS_TOKEN_AUDIENCE } from '@trellis/mesh-schema';

export const XDS_TOKEN_PLACEHOLDER = '${TRELLIS_XDS_TOKEN}';

export interface BootstrapRequest {
  controlPlaneUrl: string;
  service: string;
  nodeId: string;
  appPort: number;
  locality?: { region?: string; zone?: string; subZone?: string };
  adminPort?: number;
  format?: 'yaml' | 'json';
  /** Where this host keeps the xDS CA and client certificate, when the control plane serves xDS over TLS. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string; serverName?: string };
}

export interface XdsTokenSource {
  /** authz's HTTP side and the service's secret: a fresh token from POST /v1/token. */
  authz?: { url: string; secret: string };
  /** A static token (a credential file), used when authz is not configured or cannot issue one. */
  staticToken?: string;
}

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
  set('ca_file', req.tls?.caFile);
  set('cert_file', req.tls?.certFile);
  set('key_file', req.tls?.keyFile);
  set('server_name', req.tls?.serverName);
  return `${req.controlPlaneUrl.replace(/\/+$/, '')}/bootstrap/${encodeURIComponent(req.service)}?${query}`;
}

/** Fetches and fills the bootstrap; throws saying what is missing or who refused. */
export async function renderEnvoyBootstrap(req: BootstrapRequest, tokens: XdsTokenSource = {}): Promise<RenderedBootstrap> {
  const url = bootstrapUrl(req);
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const body = await res.text();
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${problemDetail(body)}`);
  if (!body.includes(XDS_TOKEN_PLACEHOLDER)) return { text: body };

  let token: { token: string; expiresAt?: Date } | undefined;
  let authzError: string | undefined;
  if (tokens.authz) {
    try {
      token = await fetchXdsToken(tokens.authz.url, req.service, tokens.authz.secret);
    } catch (err) {
      authzError = (err as Error).message;
    }
  }
  if (!token && tokens.staticToken) token = { token: tokens.staticToken.trim() };
  if (!token) {
    throw new Error(
      `the control plane requires an xDS token, and ${
        authzError ? `authz issued none (${authzError})` : 'no authz URL and service secret are configured'
      } and no static xDS token is given (--xds-token-file)`,
    );
  }
  if (!/^[A-Za-z0-9._~+/=-]+$/.test(token.token)) throw new Error('the xDS token has characters a bearer token cannot have');
  return { text: body.split(XDS_TOKEN_PLACEHOLDER).join(token.token), ...(token.expiresAt ? { tokenExpiresAt: token.expiresAt } : {}) };
}

/** POST {authz}/v1/token as the service, for the audience reserved for xDS streams. */
export async function fetchXdsToken(authzUrl: string, service: string, secret: string): Promise<{ token: string; expiresAt: Date }> {
  const res = await fetch(`${authzUrl.replace(/\/+$/, '')}/v1/token`, {
    method: 'POST',
    headers: { authorization: basicCredential(service, secret), 'content-type': 'application/json' },
    body: JSON.stringify({ audience: XDS_TOKEN_AUDIENCE }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST /v1/token: ${res.status} ${problemDetail(text)}`);
  const parsed = JSON.parse(text) as { token?: unknown; expiresAt?: unknown };
  if (typeof parsed.token !== 'string' || typeof parsed.expiresAt !== 'string') throw new Error('POST /v1/token answered without a token');
  return { token: parsed.token, expiresAt: new Date(parsed.expiresAt) };
}

/** Writes beside the target and renames, so Envoy never reads half a file. Unchanged content is not rewritten. */
export async function writeAtomically(path: string, text: string): Promise<boolean> {
  const current = await readFile(path, 'utf8').catch(() => undefined);
  if (current === text) return false;
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, path);
  return true;
}

export function basicCredential(service: string, secret: string): string {
  return `Basic ${Buffer.from(`${service}:${secret}`, 'utf8').toString('base64')}`;
}

function problemDetail(body: string): string {
  try {
    const problem = JSON.parse(body) as { title?: string; detail?: string };
    return [problem.title, problem.detail].filter(Boolean).join(': ');
  } catch {
    return body.slice(0, 200);
  }
}
