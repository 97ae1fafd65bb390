// Who may read the control plane's debug and bootstrap endpoints. What a proxy is
// served (/debug/config_dump), who is connected (/debug/streams, /debug/model) and a
// sidecar's bootstrap describe the mesh to whoever asks, so they are not for anyone
// who can reach the HTTP port:
// - /debug/*: the admin token (TRELLIS_ADMIN_TOKEN(_FILE), the registry's); without one
//   configured, only a client on loopback (kubectl port-forward, an operator on the host).
// - /bootstrap/{service}: the admin token, or an xDS token of that very service (what
//   `trellis bootstrap` and the agent hold); open only where the control plane admits
//   insecure xDS clients (local development), since xDS itself then tells anyone as much.
import type { RequestHandler } from 'express';
import { matchesSecretDigest, secretDigest } from '@trellis/mesh-contracts';
import { sendProblem } from '@trellis/runtime';
import { problems } from './problem';

const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

/** The bearer token of a request, if it sent one in the expected form. */
function bearerOf(header: string | undefined): string | undefined {
  return /^Bearer ([\x21-\x7e]+)$/.exec(header ?? '')?.[1];
}

/**
 * The admin token's digest as it stands: TRELLIS_ADMIN_TOKEN's, or the current token of the followed
 * TRELLIS_ADMIN_TOKEN_FILE (digested once per change); undefined when none is configured.
 */
export function adminDigestSource(token: string | { readonly current: string | undefined } | undefined): () => Buffer | undefined {
  if (typeof token === 'string') {
    const digest = secretDigest(token);
    return () => digest;
  }
  let last: { token: string; digest: Buffer } | undefined;
  return () => {
    const current = token?.current;
    if (current === undefined) return undefined;
    if (last?.token !== current) last = { token: current, digest: secretDigest(current) };
    return last.digest;
  };
}

export interface AccessOptions {
  /** Digest of the admin token as it stands (see adminDigestSource). */
  adminDigest: () => Buffer | undefined;
  /** Count a refusal (by endpoint family). */
  onRefused?: (endpoint: 'debug' | 'bootstrap') => void;
}

export function debugAccess(options: AccessOptions): RequestHandler {
  return (req, res, next) => {
    const token = bearerOf(req.headers.authorization);
    const adminDigest = options.adminDigest();
    if (adminDigest) {
      if (token !== undefined && matchesSecretDigest(token, adminDigest)) return next();
    } else if (LOOPBACK.has(req.socket.remoteAddress ?? '')) return next();
    options.onRefused?.('debug');
    sendProblem(
      res,
      adminDigest
        ? problems.unauthorized('the debug endpoints need the admin token: send "Authorization: Bearer <admin token>"')
        : problems.unauthorized(
            'the debug endpoints answer loopback only unless TRELLIS_ADMIN_TOKEN is set; then send it as a bearer token',
          ),
    );
  };
}

export function bootstrapAccess(
  options: AccessOptions & {
    /** The control plane admits xDS clients without credentials: the bootstrap protects nothing more. */
    open: boolean;
    /** Why the token does not prove the service (undefined: it does). */
    serviceTokenRefusal: (token: string, service: string) => Promise<string | undefined>;
  },
): RequestHandler {
  return (req, res, next) => {
    if (options.open) return next();
    const token = bearerOf(req.headers.authorization);
    const refuse = (detail: string) => {
      options.onRefused?.('bootstrap');
      sendProblem(res, problems.unauthorized(detail));
    };
    if (token === undefined)
      return refuse(`a bootstrap needs the service's xDS token (POST /v1/token {"audience":"trellis-xds"} at authz) or the admin token`);
    const adminDigest = options.adminDigest();
    if (adminDigest && matchesSecretDigest(token, adminDigest)) return next();
    const service = String(req.params['service'] ?? '');
    options
      .serviceTokenRefusal(token, service)
      .then((refusal) => (refusal ? refuse(refusal) : next()))
      .catch(next);
  };
}
