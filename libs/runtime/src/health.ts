import type { Request, Response, Router } from 'express';
import express from 'express';
import type { Registry } from 'prom-client';

export type ReadinessCheck = () => boolean | Promise<boolean>;
export type ReadinessListener = (ready: boolean) => void;

/**
 * Liveness and readiness. `/healthz` answers while the process runs;
 * `/readyz` answers 200 only when every check passes and shutdown has not begun.
 *
 * Readiness is also pushed: whoever changes what a check reads calls `recheck()`,
 * and listeners (the gRPC health service) hear each transition — nothing polls.
 */
export class Health {
  private readonly checks = new Map<string, ReadinessCheck>();
  private readonly listeners = new Set<ReadinessListener>();
  private draining = false;
  private published: boolean | undefined;
  // Evaluations may be async; only the newest one started may publish.
  private started = 0;
  private publishedSeq = 0;

  addCheck(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  /** Called first on SIGTERM so load balancers stop sending before we close. */
  startDraining(): void {
    this.draining = true;
    void this.recheck();
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** The last readiness heard (false before the first evaluation). */
  get isReady(): boolean {
    return this.published ?? false;
  }

  /** Listens for readiness transitions; returns the function that stops listening. */
  onChange(listener: ReadinessListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Re-evaluates the checks now; call it whenever something a check reads may have changed. */
  async recheck(): Promise<boolean> {
    return (await this.readiness()).ready;
  }

  /** Resolves once a readiness evaluation (a `recheck()` or a `/readyz`) finds every check passing. */
  async whenReady(): Promise<void> {
    if (this.published === true) return;
    await new Promise<void>((resolve) => {
      const stop = this.onChange((ready) => {
        if (!ready) return;
        stop();
        resolve();
      });
      void this.recheck();
    });
  }

  async readiness(): Promise<{ ready: boolean; checks: Record<string, boolean> }> {
    const seq = ++this.started;
    const checks: Record<string, boolean> = {};
    for (const [name, check] of this.checks) {
      try {
        checks[name] = await check();
      } catch {
        checks[name] = false;
      }
    }
    const ready = !this.draining && Object.values(checks).every(Boolean);
    this.publish(seq, ready);
    return { ready, checks: { ...checks, draining: this.draining } };
  }

  private publish(seq: number, ready: boolean): void {
    if (seq < this.publishedSeq) return;
    this.publishedSeq = seq;
    if (ready === this.published) return;
    this.published = ready;
    for (const listener of [...this.listeners]) listener(ready);
  }
}

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
