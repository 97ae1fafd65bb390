// /ui: the web interface. Reads use the same catalog as the API; writes need a
// signed-in session and a valid CSRF token, and go through the same ownership
// and concurrency checks.
import express, { Router } from 'express';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ServiceName } from '@trellis/mesh-schema';
import type { Logger } from '@trellis/runtime';
import { z } from 'zod';
import type { Authenticator, Principal } from '../auth';
import type { ServiceCatalog } from '../catalog';
import type { RegistryMetrics } from '../metrics';
import { ProblemError } from '@trellis/runtime';
import { neighbours } from '../topology';
import { emptyForm, formToSpec, problemToFormErrors, readForm, specToForm } from './service-form';
import { findNackCause } from './nack-cause';
import type { PageContext } from './pages';
import {
  historyPage,
  loginPage,
  messagePage,
  serviceFormPage,
  serviceListPage,
  servicePage,
  serviceUrl,
  STYLESHEET,
  topologyPage,
} from './pages';
import type { UiSessions } from './session';

export interface UiOptions {
  catalog: ServiceCatalog;
  authenticator: Authenticator;
  sessions: UiSessions;
  metrics: RegistryMetrics;
  logger: Logger;
  readsRequireAuth: boolean;
  maxBodyBytes: number;
}

const Generation = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const ModRevision = z.string().regex(/^\d{1,20}$/);

export function uiRouter(options: UiOptions): Router {
  const { catalog, authenticator, sessions, metrics, logger } = options;
  const router = Router();
  const form = express.urlencoded({ extended: false, limit: options.maxBodyBytes, parameterLimit: 64 });

  /** Resolves the session (if any) and the CSRF token for this response. */
  const context: RequestHandler = (req, res, next) => {
    const token = sessions.sessionToken(req);
    const done = (principal?: Principal) => {
      // Forms are bound to the session that verified, or to none.
      const csrfToken = sessions.csrfToken(req, res, principal ? token : undefined);
      res.locals['page'] = { principal, csrfToken } satisfies PageContext;
      // Kept apart from what pages render: the CSRF check binds to it.
      res.locals['session'] = principal ? token : undefined;
      next();
    };
    if (!token) return done();
    authenticator
      .verify(token)
      .then((result) => {
        if (result.ok) return done(result.principal);
        if (result.reason === 'jwks-unavailable') {
          // Not the session's fault: treat this request as signed out, keep the cookie.
          metrics.authFailures.inc({ reason: result.reason });
          logger.error({ path: req.path }, 'cannot verify the UI session: the JWKS cannot be fetched');
          return done();
        }
        // A stale session cookie is dropped rather than trusted.
        sessions.signOut(res);
        done();
      })
      .catch(next);
  };
  const page = (res: Response): PageContext => res.locals['page'] as PageContext;
  const send = (res: Response, status: number, body: string) => res.status(status).type('html').send(body);

  const requireSignIn = (req: Request, res: Response, next: NextFunction) => {
    if (page(res).principal) return next();
    if (req.method === 'GET') return res.redirect(303, `/ui/login?next=${encodeURIComponent(req.originalUrl)}`);
    metrics.authFailures.inc({ reason: 'missing' });
    send(res, 401, loginPage(page(res), 'Sign in to make changes.'));
  };
  const requireReader: RequestHandler = options.readsRequireAuth ? requireSignIn : (_req, _res, next) => next();
  const verifyCsrf: RequestHandler = (req, res, next) => {
    const check = sessions.verifyCsrf(req, res.locals['session'] as string | undefined);
    if (check.ok) return next();
    metrics.authFailures.inc({ reason: 'csrf' });
    logger.warn({ reason: check.reason, path: req.path }, 'refused form post: CSRF check failed');
    send(
      res,
      403,
      messagePage(page(res), 'Form expired', 'The form could not be verified (CSRF check failed). Reload the page and try again.'),
    );
  };
  const post = [form, context, verifyCsrf];

  router.get('/ui/assets/style.css', (_req, res) => {
    res.type('text/css').set('Cache-Control', 'public, max-age=300').send(STYLESHEET);
  });
  router.get('/', (_req, res) => res.redirect(302, '/ui/services'));
  router.get('/ui', (_req, res) => res.redirect(302, '/ui/services'));
  router.get('/topology', (_req, res) => res.redirect(302, '/ui/topology'));

  router.get('/ui/login', context, (req, res) => {
    send(res, 200, loginPage(page(res), undefined, safeNext(req.query['next'])));
  });
  router.post('/ui/login', ...post, async (req, res) => {
    const body = req.body as Record<string, unknown>;
    const token = typeof body['token'] === 'string' ? body['token'].trim() : '';
    const result = await authenticator.verify(token);
    if (!result.ok) {
      metrics.authFailures.inc({ reason: result.reason });
      return send(res, 401, loginPage(page(res), `Sign-in failed: ${result.detail}.`, safeNext(body['next'])));
    }
    sessions.signIn(res, token);
    res.redirect(303, safeNext(body['next']));
  });
  router.post('/ui/logout', ...post, (_req, res) => {
    sessions.signOut(res);
    res.redirect(303, '/ui/services');
  });

  router.get('/ui/services', context, requireReader, async (req, res) => {
    const q = typeof req.query['q'] === 'string' ? req.query['q'].slice(0, 128) : '';
    send(res, 200, serviceListPage(page(res), await catalog.list(q ? { q } : {}), q));
  });

  router.get('/ui/services/new', context, requireSignIn, (_req, res) => {
    const values = emptyForm();
    if (page(res).principal?.kind === 'team') values.team = (page(res).principal as { team: string }).team;
    send(res, 200, serviceFormPage(page(res), { mode: 'create', values }));
  });

  router.post('/ui/services', ...post, requireSignIn, async (req, res) => {
    const values = readForm(req.body);
    const result = formToSpec(values);
    if (!result.ok) return send(res, 400, serviceFormPage(page(res), { mode: 'create', values, errors: result.errors }));
    try {
      await catalog.create(page(res).principal!, result.spec);
    } catch (err) {
      if (err instanceof ProblemError)
        return send(
          res,
          err.status,
          serviceFormPage(page(res), { mode: 'create', values, errors: problemToFormErrors(err.errors ?? [], err.message) }),
        );
      throw err;
    }
    res.redirect(303, serviceUrl(result.spec.name));
  });

  router.get('/ui/topology', context, requireReader, async (_req, res) => {
    send(res, 200, topologyPage(page(res), await catalog.topology()));
  });

  router.get('/ui/services/:name', context, requireReader, async (req, res) => {
    const name = uiParam(ServiceName, req.params['name']);
    const service = await catalog.find(name);
    if (!service) return send(res, 404, messagePage(page(res), 'Not found', `Service "${name}" is not registered.`));
    const [instances, topology, proxies] = await Promise.all([catalog.instances(name), catalog.topology(), catalog.proxies(name)]);
    const { callers, callees } = neighbours(topology, name);
    const registered = new Set(topology.nodes.filter((n) => n.registered).map((n) => n.name));
    // A proxy's config is built from its own service and the services it calls (a callee
    // deleted since still has its history): a rejected config came from a change to one of them.
    const related = proxies.some((p) => Object.values(p.types).some((t) => t.lastNack)) ? [name, ...callees] : [];
    const changes = (await Promise.all(related.map((service) => catalog.changes(service)))).flat();
    send(
      res,
      200,
      servicePage(page(res), {
        service,
        instances,
        callers,
        callees: callees.map((c) => ({ name: c, registered: registered.has(c) })),
        proxies,
        nackCause: (nack) => findNackCause(changes, nack),
      }),
    );
  });

  router.get('/ui/services/:name/edit', context, requireSignIn, async (req, res) => {
    const service = await catalog.get(uiParam(ServiceName, req.params['name']));
    send(res, 200, serviceFormPage(page(res), { mode: 'edit', values: specToForm(service.value.spec), modRevision: service.modRevision }));
  });

  router.post('/ui/services/:name', ...post, requireSignIn, async (req, res) => {
    const name = uiParam(ServiceName, req.params['name']);
    const current = await catalog.get(name);
    const values = { ...readForm(req.body), name };
    const modRevision = ModRevision.safeParse((req.body as Record<string, unknown>)['modRevision']);
    const result = formToSpec(values, current.value.spec);
    const rerender = (status: number, errors: Parameters<typeof serviceFormPage>[1]['errors']) =>
      send(
        res,
        status,
        serviceFormPage(page(res), {
          mode: 'edit',
          values,
          errors,
          modRevision: modRevision.success ? modRevision.data : current.modRevision,
        }),
      );
    if (!result.ok) return rerender(400, result.errors);
    try {
      await catalog.put(page(res).principal!, result.spec, modRevision.success ? modRevision.data : current.modRevision);
    } catch (err) {
      if (err instanceof ProblemError && err.status === 412) {
        return send(
          res,
          412,
          serviceFormPage(page(res), {
            mode: 'edit',
            values,
            modRevision: current.modRevision,
            errors: {
              _form: ['Someone else changed this service while you were editing. Review the current values below and save again.'],
            },
          }),
        );
      }
      if (err instanceof ProblemError) return rerender(err.status, problemToFormErrors(err.errors ?? [], err.message));
      throw err;
    }
    res.redirect(303, serviceUrl(name));
  });

  router.post('/ui/services/:name/delete', ...post, requireSignIn, async (req, res) => {
    const name = uiParam(ServiceName, req.params['name']);
    const modRevision = ModRevision.safeParse((req.body as Record<string, unknown>)['modRevision']);
    await catalog.delete(page(res).principal!, name, modRevision.success ? modRevision.data : undefined);
    res.redirect(303, '/ui/services');
  });

  router.get('/ui/services/:name/history', context, requireReader, async (req, res) => {
    const name = uiParam(ServiceName, req.params['name']);
    const [entries, current] = await Promise.all([catalog.history(name), catalog.find(name)]);
    send(res, 200, historyPage(page(res), name, entries, current?.value.generation));
  });

  router.post('/ui/services/:name/rollback', ...post, requireSignIn, async (req, res) => {
    const name = uiParam(ServiceName, req.params['name']);
    const generation = uiParam(Generation, (req.body as Record<string, unknown>)['generation']);
    await catalog.rollback(page(res).principal!, name, generation, undefined);
    res.redirect(303, serviceUrl(name));
  });

  router.use('/ui', context, (req, res) => {
    send(res, 404, messagePage(page(res), 'Not found', `There is no page at ${req.originalUrl}.`));
  });

  // Problems raised by UI handlers become HTML pages, not JSON.
  router.use('/ui', ((err, req, res, next) => {
    if (!(err instanceof ProblemError) || res.headersSent) return next(err);
    const ctx: PageContext = (res.locals['page'] as PageContext | undefined) ?? {
      csrfToken: sessions.csrfToken(req, res, sessions.sessionToken(req)),
    };
    send(res, err.status, messagePage(ctx, err.title, err.message));
  }) as express.ErrorRequestHandler);

  return router;
}

function uiParam<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new ProblemError(400, 'validation', 'Invalid request', parsed.error.issues[0]?.message ?? 'invalid value');
  return parsed.data;
}

/** Only same-site relative paths may be redirected to after signing in. */
function safeNext(value: unknown): string {
  return typeof value === 'string' && /^\/ui(\/[A-Za-z0-9._~\-/?=&%]*)?$/.test(value) && !value.startsWith('//') ? value : '/ui/services';
}
