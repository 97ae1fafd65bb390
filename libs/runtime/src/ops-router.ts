// The HTTP face of Health and a metrics registry. Apart from health.ts so that what uses Health
// without serving HTTP (authz's Check worker, the gRPC health service) does not load express.
import type { Request, Response, Router } from 'express';
import express from 'express';
import type { Registry } from 'prom-client';
import type { Health } from './health';

/** What `/metrics` serves: a prom-client registry, or anything that renders one's text (authz adds its Check worker's). */
export type MetricsSource = Pick<Registry, 'contentType' | 'metrics'>;

/** `/healthz`, `/readyz` and `/metrics` as an express router. */
export function opsRouter(health: Health, metrics: MetricsSource): Router {
  const router = express.Router();
  router.get('/healthz', (_req: Request, res: Response) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req: Request, res: Response) => {
    const { ready, checks } = await health.readiness();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks });
  });
  router.get('/metrics', async (_req: Request, res: Response) => {
    res.set('Content-Type', metrics.contentType).send(await metrics.metrics());
  });
  return router;
}
