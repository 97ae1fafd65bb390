import type { Request, Response, Router } from 'express';
import express from 'express';
import type { Registry } from 'prom-client';

export type ReadinessCheck = () => boolean | Promise<boolean>;

/**
 * Liveness and readiness. `/healthz` answers while the process runs;
 * `/readyz` answers 200 only when every check passes and shutdown has not begun.
 */
export class Health {
  private readonly checks = new Map<string, ReadinessCheck>();
  private draining = false;

  addCheck(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  /** Called first on SIGTERM so load balancers stop sending before we close. */
  startDraining(): void {
    this.draining = true;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  async readiness(): Promise<{ ready: boolean; checks: Record<string, boolean> }> {
    const checks: Record<string, boolean> = {};
    for (const [name, check] of this.checks) {
      try {
        checks[name] = await check();
      } catch {
        checks[name] = false;
      }
    }
    const ready = !this.draining && Object.values(checks).every(Boolean);
    return { ready, checks: { ...checks, draining: this.draining } };
  }
}

/** `/healthz`, `/readyz` and `/metrics` as an express router. */
export function opsRouter(health: Health, metrics: Registry): Router {
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
