// /api/v1: the versioned REST API.
import { Router } from 'express';
import type { RequestHandler } from 'express';
import type { ServiceCatalog } from '../catalog';
import { instancesRouter } from './instances';
import { servicesRouter } from './services';

export function apiV1Router(catalog: ServiceCatalog, guards: { read: RequestHandler[]; write: RequestHandler[]; json: RequestHandler[] }): Router {
  const router = Router();
  router.use(servicesRouter(catalog, guards));
  router.use(instancesRouter(catalog, guards));
  return router;
}
