// Client side: obtains A→B mesh tokens from authz's token endpoint. A token is
// renewed MESH_TOKEN_RENEW_BEFORE_SECONDS before it expires, in the background:
// calls keep using the held token while it is valid, so an authz outage costs
// nothing until the held token runs out. Only a caller with no valid token
// waits for authz. One fetch per audience at a time (single-flight).
//
// The service proves itself with its workload certificate: the files the agent
// keeps renewed (certificate-files.ts), presented as the TLS client certificate
// to authz's mTLS port and re-read for every request, so a renewal applies at
// once. authz's own certificate must chain to the same trust bundle and carry
// spiffe://<trust domain>/trellis/authz. The service credential alone is
// accepted only by an authz run for local development.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { decodeJwt } from 'jose';
import { componentSpiffeIdOf, MESH_TOKEN_RENEW_BEFORE_SECONDS } from '@trellis/mesh-contracts';
import { spiffeServerIdentityCheck, uriSans } from '@trellis/pki';
import type { CertificateFiles } from './certificate-files';

export interface MeshTokenClientOptions {
  /** authz's base URL: its mTLS port with `certificates` (https://authz.trellis:8443), its HTTP port with `secret`. */
  authzUrl: string;
  /** This service's name (the token's `sub`). */
  service: string;
  /** The workload certificate files (production): the identity authz takes the token's `sub` from. */
  certificates?: CertificateFiles;
  /** Local development only (authz with TRELLIS_ALLOW_INSECURE_CALLERS): the service credential instead of a certificate. */
  secret?: string;
  /** Renew this long before `exp` (default MESH_TOKEN_RENEW_BEFORE_SECONDS, at most half the token's life). */
  renewBeforeSeconds?: number;
  /** A background renewal failed; the held token stays in use while valid. */
  onRenewError?: (audience: string, err: Error) => void;
  requestTimeoutMs?: number;
  now?: () => number;
}

interface CachedToken {
  token: string;
  renewAt: number;
  /** Presented until then (exp less a margin for the call's own time in flight). */
  usableUntil: number;
}

/** A token is not presented closer to its exp than this: the call still has to reach the callee. */
const IN_FLIGHT_MARGIN_MS = 5_000;
/** After a failed background renewal (or one that returned no newer token), wait this long before the next. */
const RENEW_RETRY_MS = 2_000;

export class MeshTokenError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'MeshTokenError';
  }
}

export class MeshTokenClient {
  private readonly cache = new Map<string, CachedToken>();
  private readonly inFlight = new Map<string, Promise<string>>();
  /** Per audience: no background renewal before this time (after a failure). */
  private readonly renewNotBefore = new Map<string, number>();
  private readonly renewBeforeMs: number;
  private readonly now: () => number;

  constructor(private readonly options: MeshTokenClientOptions) {
    if ((options.certificates === undefined) === (options.secret === undefined))
      throw new MeshTokenError('MeshTokenClient: give either certificates (production) or secret (local development), not both');
    if (options.certificates && new URL(options.authzUrl).protocol !== 'https:')
      throw new MeshTokenError(
        `MeshTokenClient: authzUrl must be authz's https:// mTLS port to present a certificate, not ${options.authzUrl}`,
      );
    this.renewBeforeMs = (options.renewBeforeSeconds ?? MESH_TOKEN_RENEW_BEFORE_SECONDS) * 1000;
    this.now = options.now ?? Date.now;
  }

  /** A token for calling `audience`; throws MeshTokenError when authz refuses (e.g. the dependency is not declared). */
  async getToken(audience: string): Promise<string> {
    const held = this.cache.get(audience);
    const now = this.now();
    if (held && now < held.renewAt) return held.token;
    if (held && now < held.usableUntil) {
      // Due for renewal but still valid: renew in the background, keep using it meanwhile.
      if (!this.inFlight.has(audience) && now >= (this.renewNotBefore.get(audience) ?? 0))
        this.fetchShared(audience).catch((err: Error) => {
          this.renewNotBefore.set(audience, this.now() + RENEW_RETRY_MS);
          this.options.onRenewError?.(audience, err);
        });
      return held.token;
    }
    return this.fetchShared(audience);
  }

  private fetchShared(audience: string): Promise<string> {
    const pending = this.inFlight.get(audience);
    if (pending) return pending;
    const fetching = this.fetchToken(audience).finally(() => this.inFlight.delete(audience));
    this.inFlight.set(audience, fetching);
    return fetching;
  }

  private async fetchToken(audience: string): Promise<string> {
    const res = await this.post(JSON.stringify({ audience }));
    if (res.status < 200 || res.status >= 300) {
      throw new MeshTokenError(
        `authz refused a token for ${this.options.service}→${audience}: ${res.status} ${res.text.slice(0, 300)}`,
        res.status,
      );
    }
    let body: { token?: unknown };
    try {
      body = JSON.parse(res.text) as { token?: unknown };
    } catch {
      throw new MeshTokenError('authz answered with something other than JSON');
    }
    if (typeof body.token !== 'string') throw new MeshTokenError('authz answered without a token');
    const { exp, iat } = decodeJwt(body.token);
    if (typeof exp !== 'number') throw new MeshTokenError('authz issued a token without exp');
    const expiresAt = exp * 1000;
    const lifetimeMs = typeof iat === 'number' ? expiresAt - iat * 1000 : this.renewBeforeMs * 2;
    const renewAt = expiresAt - Math.min(this.renewBeforeMs, lifetimeMs / 2);
    this.cache.set(audience, { token: body.token, renewAt, usableUntil: expiresAt - IN_FLIGHT_MARGIN_MS });
    // Handed the token already held (an authz cache not yet past it): do not ask again at once.
    if (renewAt <= this.now()) this.renewNotBefore.set(audience, this.now() + RENEW_RETRY_MS);
    return body.token;
  }

  private async post(body: string): Promise<{ status: number; text: string }> {
    const url = new URL('/v1/token', this.options.authzUrl);
    const timeoutMs = this.options.requestTimeoutMs ?? 2_000;
    if (this.options.secret !== undefined) {
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Basic ${Buffer.from(`${this.options.service}:${this.options.secret}`).toString('base64')}`,
        },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      return { status: res.status, text: await res.text().catch(() => '') };
    }
    const files = this.options.certificates!;
    const [cert, key, ca] = await Promise.all([
      readFile(files.certificateFile, 'utf8'),
      readFile(files.privateKeyFile, 'utf8'),
      readFile(files.caCertificateFile, 'utf8'),
    ]);
    const authzId = componentSpiffeIdOf(trustDomainOf(cert), 'authz');
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        url,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          cert,
          key,
          ca,
          checkServerIdentity: spiffeServerIdentityCheck(authzId),
          // A fresh connection each time: the certificate files may have been renewed since the last one.
          agent: false,
          timeout: timeoutMs,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new MeshTokenError(`authz did not answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }
}

/** The trust domain of our own workload certificate (spiffe://<trust domain>/svc/<service>): authz's identity lives there too. */
function trustDomainOf(certificatePem: string): string {
  const spiffe = uriSans(new X509Certificate(certificatePem).subjectAltName).find((uri) => uri.startsWith('spiffe://'));
  const match = spiffe && /^spiffe:\/\/([^/]+)\/svc\//.exec(spiffe);
  if (!match) throw new MeshTokenError('the workload certificate carries no spiffe://<trust domain>/svc/<service> identity');
  return match[1]!;
}
