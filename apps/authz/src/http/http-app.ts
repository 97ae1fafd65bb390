// The HTTP side: JWKS for validators, the mesh CA's endpoints, and the ops
// endpoints; and the mTLS side (its own port): the token endpoint for callers
// outside Envoy, who prove their service with their workload certificate. The
// plain port's token endpoint takes the service credential alone only for local
// development (TRELLIS_ALLOW_INSECURE_CALLERS).
import type { TLSSocket } from 'node:tls';
import express, { type Express, type NextFunction, type Request, type RequestHandler, type Response, type Router } from 'express';
import { z } from 'zod';
import { identityOfPeerCertificate } from '@trellis/pki';
import { opsRouter, ProblemError, requestIds, sendProblem, type Health, type Logger, type MetricsSource } from '@trellis/runtime';
import { DNS_LABEL, XDS_TOKEN_AUDIENCE, type ServiceCredentials } from '@trellis/mesh-schema';
import type { MeshPolicy } from '../check/mesh-policy';
import type { KeyRing } from '../keys/key-ring';
import type { AuthzMetrics } from '../metrics';
import type { MintedToken } from '../tokens/mint';
import { NoSigningKeyError, type MeshTokenIssuer } from '../tokens/token-issuer';
import { problems } from './problem';

interface TokenDeps {
  policy: MeshPolicy;
  tokens: MeshTokenIssuer;
  metrics: AuthzMetrics;
  logger: Logger;
}

export interface HttpAppDeps extends TokenDeps {
  health: Health;
  registry: MetricsSource;
  keyRing: KeyRing;
  /** The service credentials; POST /v1/token takes them only with `allowInsecureCallers`. */
  /** Asked on every request: a reloaded set applies at once. */
  credentials: Pick<ServiceCredentials, 'authenticate'> | undefined;
  /** Local development only: POST /v1/token on this port accepts the service credential alone. */
  allowInsecureCallers: boolean;
  /** The mesh CA's endpoints (certificate-route.ts). */
  certificates: Router;
}

export interface MtlsAppDeps extends TokenDeps {
  /** The mesh's trust domain, in which a client certificate names a service. */
  trustDomain: () => string;
}

// A service to call, or XDS_TOKEN_AUDIENCE (a reserved name, never a service) for the
// caller's own xDS stream credential.
const TokenRequest = z
  .object({ audience: z.string().regex(DNS_LABEL, `must be a service name (a DNS label) or "${XDS_TOKEN_AUDIENCE}"`) })
  .strict();

export function createHttpApp(deps: HttpAppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(requestIds(deps.logger));
  app.use(opsRouter(deps.health, deps.registry));

  app.get('/.well-known/jwks.json', (_req, res) => {
    // Short max-age: a new key appears here a full publish lead time before it signs.
    res.set('Cache-Control', 'public, max-age=60').json(deps.keyRing.jwks());
  });

  app.post(
    '/v1/token',
    express.json({ limit: '4kb' }),
    tokenHandler(deps, (req) => credentialCaller(deps, req)),
  );

  app.use(deps.certificates);
  endWithProblems(app, deps.logger);
  return app;
}

/** The mTLS port's app: POST /v1/token for the service the verified client certificate names. */
export function createMtlsApp(deps: MtlsAppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(requestIds(deps.logger));
  app.post(
    '/v1/token',
    express.json({ limit: '4kb' }),
    tokenHandler(deps, (req) => certificateCaller(deps, req)),
  );
  endWithProblems(app, deps.logger);
  return app;
}

/** Who asks for a token, or why nobody we accept does (`result` is the token endpoint metric's, `denial` the identity one's). */
type TokenCaller =
  { ok: true; service: string } | { ok: false; problem: ProblemError; result: string; denial?: string; challenge?: string };

function certificateCaller(deps: MtlsAppDeps, req: Request): TokenCaller {
  const socket = req.socket as TLSSocket;
  // Without a verified certificate the handshake fails already; this holds if that ever changes.
  const certificate = socket.authorized ? socket.getPeerCertificate() : undefined;
  if (!certificate?.raw)
    return { ok: false, problem: problems.certificateRequired(), result: 'unauthenticated', denial: 'peer-unauthenticated' };
  const identity = identityOfPeerCertificate(certificate, deps.trustDomain());
  if (identity.kind !== 'service') {
    const denial = identity.kind === 'unknown' ? 'peer-unknown-identity' : 'peer-not-a-service';
    return { ok: false, problem: problems.forbidden('the client certificate names no service of this mesh'), result: 'denied', denial };
  }
  return { ok: true, service: identity.service };
}

function credentialCaller(deps: HttpAppDeps, req: Request): TokenCaller {
  if (!deps.allowInsecureCallers)
    return { ok: false, problem: problems.certificateRequired(), result: 'certificate-required', denial: 'credential-only' };
  if (!deps.credentials) return { ok: false, problem: problems.tokenEndpointDisabled(), result: 'disabled' };
  const service = deps.credentials.authenticate(req.get('authorization'));
  if (!service)
    return {
      ok: false,
      problem: problems.unauthenticated(),
      result: 'unauthenticated',
      challenge: 'Basic realm="trellis-authz", charset="UTF-8"',
    };
  return { ok: true, service };
}

function tokenHandler(deps: TokenDeps, identify: (req: Request) => TokenCaller): RequestHandler {
  const { metrics } = deps;
  return async (req: Request, res: Response) => {
    const caller = identify(req);
    if (!caller.ok) {
      metrics.tokenEndpointRequests.inc({ result: caller.result });
      if (caller.denial) metrics.callerIdentityDenials.inc({ direction: 'token', reason: caller.denial });
      if (caller.challenge) res.set('WWW-Authenticate', caller.challenge);
      return sendProblem(res, caller.problem);
    }
    const service = caller.service;
    const body = TokenRequest.safeParse(req.body ?? {});
    if (!body.success) {
      metrics.tokenEndpointRequests.inc({ result: 'invalid' });
      const issue = body.error.issues[0]!;
      const field = issue.path.join('.') || String((issue as { keys?: string[] }).keys?.[0] ?? '(body)');
      return sendProblem(res, problems.invalid(field, `${field}: ${issue.message}`));
    }
    const { audience } = body.data;
    if (audience === XDS_TOKEN_AUDIENCE) {
      // No dependency to check: proving the service is the proof of being it.
      return issue(res, () => deps.tokens.xdsTokenFor(service), 'xds-ok');
    }
    if (!deps.policy.ready) {
      metrics.tokenEndpointRequests.inc({ result: 'not-ready' });
      return sendProblem(res, problems.notReady());
    }
    const call = deps.policy.allowsCall(service, audience);
    if (!call.allowed) {
      metrics.tokenEndpointRequests.inc({ result: 'denied' });
      return sendProblem(res, problems.undeclared(service, audience, call.reason));
    }
    return issue(res, () => deps.tokens.tokenFor(service, audience), 'ok');
  };

  async function issue(res: Response, mint: () => Promise<MintedToken>, result: 'ok' | 'xds-ok'): Promise<void> {
    try {
      const minted = await mint();
      metrics.tokenEndpointRequests.inc({ result });
      res.set('Cache-Control', 'no-store').json({
        token: minted.token,
        tokenType: 'Bearer',
        expiresAt: new Date(minted.expiresAt * 1000).toISOString(),
        expiresIn: Math.max(0, minted.expiresAt - Math.floor(Date.now() / 1000)),
      });
    } catch (err) {
      if (!(err instanceof NoSigningKeyError)) deps.logger.error({ err }, 'token endpoint failed');
      metrics.tokenEndpointRequests.inc({ result: 'error' });
      sendProblem(res, problems.unavailable('token'));
    }
  }
}

/** 404 for anything else, and body parser errors (bad JSON, too large) as problems. */
function endWithProblems(app: Express, logger: Logger): void {
  app.use((req: Request, res: Response) => sendProblem(res, problems.notFound(req.method, req.path)));
  app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) logger.error({ err }, 'unhandled HTTP error');
    sendProblem(
      res,
      status === 500 ? problems.internal() : ProblemError.field(status, 'malformed-body', 'Bad request', '(body)', err.message),
    );
  });
}
