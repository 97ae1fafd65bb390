// /api/v1: the versioned REST API.
import { Router } from 'express';
import type { ServiceCatalog } from '../catalog';
import type { RouteGuards } from '../http';
import { problems } from '../problem';
import { hostsRouter } from './hosts';
import { instancesRouter } from './instances';
import { servicesRouter } from './services';

/** Every resource path and the methods it answers; anything else there is a 405. */
const ALLOWED_METHODS: ReadonlyArray<[string, string[]]> = [
  ['/services', ['GET', 'POST']],
  ['/services/:name', ['GET', 'PUT', 'DELETE']],
  ['/services/:name/history', ['GET']],
  ['/services/:name/history/:generation', ['GET']],
  ['/services/:name/rollback', ['POST']],
  ['/services/:name/proxies', ['GET']],
  ['/services/:name/instances', ['GET', 'POST']],
  ['/services/:name/instances/:id', ['DELETE']],
  ['/services/:name/instances/:id/heartbeat', ['PUT']],
  ['/services/:name/instances/:id/drain', ['PUT']],
  ['/topology', ['GET']],
  ['/hosts', ['GET']],
  ['/hosts/:host', ['PUT']],
];

export function apiV1Router(catalog: ServiceCatalog, guards: RouteGuards): Router {
  const router = Router();
  router.use(servicesRouter(catalog, guards));
  router.use(instancesRouter(catalog, guards));
  router.use(hostsRouter(catalog, guards));
  for (const [path, methods] of ALLOWED_METHODS) {
    const allowed = methods.includes('GET') ? [...methods, 'HEAD'] : methods;
    router.all(path, (req, res, next) => {
      res.set('Allow', allowed.join(', '));
      next(problems.methodNotAllowed(req.method, allowed));
    });
  }
  return router;
}
