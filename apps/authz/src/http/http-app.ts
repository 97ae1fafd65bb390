// The HTTP side: JWKS for validators, the token endpoint for callers outside
// Envoy, and the ops endpoints.
import express, { type Express, type NextFunction, type Request, type Response, type Router } from 'express';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import { opsRouter, ProblemError, requestIds, sendProblem, type Health, type Logger } from '@trellis/runtime';
import { DNS_LABEL, XDS_TOKEN_AUDIENCE, type ServiceCredentials } from '@trellis/mesh-schema';
import type { MeshPolicy } from '../check/mesh-policy';
import type { KeyRing } from '../keys/key-ring';
import type { AuthzMetrics } from '../metrics';
import type { MintedToken } from '../tokens/mint';
import { NoSigningKeyError, type MeshTokenIssuer } from '../tokens/token-issuer';
import { problems } from './problem';

export interface HttpAppDeps {
  health: Health;
  registry: Registry;
  keyRing: KeyRing;
  policy: MeshPolicy;
  tokens: MeshTokenIssuer;
  /** Undefined: the token endpoint is disabled. */
  credentials: ServiceCredentials | undefined;
  /** The mesh CA's endpoints (certificate-route.ts). */
  certificates: Router;
  metrics: AuthzMetrics;
  logger: Logger;
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

  app.post('/v1/token', express.json({ limit: '4kb' }), async (req: Request, res: Response) => {
    const { metrics } = deps;
    if (!deps.credentials) {
      metrics.tokenEndpointRequests.inc({ result: 'disabled' });
      return sendProblem(res, problems.tokenEndpointDisabled());
    }
    const caller = deps.credentials.authenticate(req.get('authorization'));
    if (!caller) {
      metrics.tokenEndpointRequests.inc({ result: 'unauthenticated' });
      res.set('WWW-Authenticate', 'Basic realm="trellis-authz", charset="UTF-8"');
      return sendProblem(res, problems.unauthenticated());
    }
    const body = TokenRequest.safeParse(req.body ?? {});
    if (!body.success) {
      metrics.tokenEndpointRequests.inc({ result: 'invalid' });
      const issue = body.error.issues[0]!;
      const field = issue.path.join('.') || String((issue as { keys?: string[] }).keys?.[0] ?? '(body)');
      return sendProblem(res, problems.invalid(field, `${field}: ${issue.message}`));
    }
    const { audience } = body.data;
    if (audience === XDS_TOKEN_AUDIENCE) {
      // No dependency to check: holding the service's credential is the proof of being it.
      return issue(res, () => deps.tokens.xdsTokenFor(caller), 'xds-ok');
    }
    if (!deps.policy.ready) {
      metrics.tokenEndpointRequests.inc({ result: 'not-ready' });
      return sendProblem(res, problems.notReady());
    }
    const call = deps.policy.allowsCall(caller, audience);
    if (!call.allowed) {
      metrics.tokenEndpointRequests.inc({ result: 'denied' });
      return sendProblem(res, problems.undeclared(caller, audience, call.reason));
    }
    return issue(res, () => deps.tokens.tokenFor(caller, audience), 'ok');
  });

  async function issue(res: Response, mint: () => Promise<MintedToken>, result: 'ok' | 'xds-ok'): Promise<void> {
    try {
      const minted = await mint();
      deps.metrics.tokenEndpointRequests.inc({ result });
      res.set('Cache-Control', 'no-store').json({
        token: minted.token,
        tokenType: 'Bearer',
        expiresAt: new Date(minted.expiresAt * 1000).toISOString(),
        expiresIn: Math.max(0, minted.expiresAt - Math.floor(Date.now() / 1000)),
      });
    } catch (err) {
      if (!(err instanceof NoSigningKeyError)) deps.logger.error({ err }, 'token endpoint failed');
      deps.metrics.tokenEndpointRequests.inc({ result: 'error' });
      sendProblem(res, problems.unavailable('token'));
    }
  }

  app.use(deps.certificates);

  app.use((req: Request, res: Response) => sendProblem(res, problems.notFound(req.method, req.path)));
  // Body parser errors (bad JSON, too large) end here.
  app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) deps.logger.error({ err }, 'unhandled HTTP error');
    sendProblem(
      res,
      status === 500 ? problems.internal() : ProblemError.field(status, 'malformed-body', 'Bad request', '(body)', err.message),
    );
  });
  return app;
}
