// `trellis agent`: keeps one workload instance in the registry exactly while it
// should take traffic.
//
// - It registers only once the app's local health check passes, then keeps the
//   lease alive with heartbeats. After `failureThreshold` failed checks in a row it
//   withdraws (deregisters) the instance, and registers it again once checks pass.
// - A heartbeat answered 404 means the lease is gone (etcd was down or frozen for
//   longer than the TTL, or someone deregistered it): it registers again at once.
// - Every registry error is retried with exponential backoff and full jitter; the
//   agent never gives up on a transient error.
// - drain() (SIGTERM): mark the instance draining so the control plane stops sending
//   it new calls, keep heartbeating through the drain period, then deregister.
import type { Logger } from '@trellis/runtime';
import { Backoff } from './backoff';
import type { HealthProbe } from './health-probe';
import type { AgentMetrics } from './metrics';
import { RegistryError, type InstanceRegistrar } from './registrar';

export interface AgentOptions {
  service: string;
  instanceId: string;
  registrar: InstanceRegistrar;
  probe: HealthProbe;
  health: {
    intervalMs: number;
    timeoutMs: number;
    /** Failed checks in a row that withdraw a registered instance. */
    failureThreshold: number;
    /** Passed checks in a row that (re-)register it. */
    successThreshold: number;
  };
  heartbeatIntervalMs: number;
  /** How long a draining instance keeps serving its calls in flight before it is deregistered. */
  drainMs: number;
  retry: { baseMs: number; maxMs: number };
  logger: Logger;
  metrics: AgentMetrics;
}

export type AgentState = 'waiting-for-health' | 'registered' | 'withdrawn' | 'draining' | 'stopped';

export class Agent {
  private healthy = false;
  private passes = 0;
  private failures = 0;
  private registered = false;
  private draining = false;
  private stopped = false;
  private wasRegistered = false;
  private lastHeartbeat = 0;
  private readonly backoff: Backoff;
  private readonly wake = new Wakeup();
  private loops: Promise<void>[] = [];

  constructor(private readonly options: AgentOptions) {
    // Retrying a heartbeat faster than its interval is what keeps the lease through a short outage.
    this.backoff = new Backoff({ baseMs: options.retry.baseMs, maxMs: Math.min(options.retry.maxMs, options.heartbeatIntervalMs) });
  }

  get state(): AgentState {
    if (this.stopped) return 'stopped';
    if (this.draining) return 'draining';
    if (this.registered) return 'registered';
    return this.wasRegistered ? 'withdrawn' : 'waiting-for-health';
  }

  /** Serving: registered and not draining (the agent's own readiness). */
  get serving(): boolean {
    return this.registered && !this.draining;
  }

  start(): void {
    this.options.logger.info(
      { service: this.options.service, instance: this.options.instanceId },
      'waiting for the app to pass its health check',
    );
    this.loops = [this.probeLoop(), this.registryLoop()];
  }

  /**
   * SIGTERM: drain, wait the drain period, deregister. Resolves when the instance is gone
   * (or could not be reached). `immediate`: the app is already gone, deregister at once.
   */
  async drain(options: { immediate?: boolean } = {}): Promise<void> {
    if (this.draining || this.stopped) return;
    this.draining = true;
    this.options.metrics.draining.set(1);
    this.wake.fire();
    const { logger, registrar, drainMs } = this.options;
    if (this.registered && !options.immediate) {
      logger.info({ drainMs }, 'draining: no new calls; deregistering after the drain period');
      const drainUntil = Date.now() + drainMs;
      const marked = await this.retryUntil(drainUntil, 'drain', () => registrar.drain());
      if (marked === 'lost') this.registered = false;
      await sleep(Math.max(0, drainUntil - Date.now()));
    } else if (!this.registered) {
      logger.info('stopping: the instance is not registered, nothing to drain');
    }
    this.stopped = true;
    this.wake.fire();
    await Promise.all(this.loops);
    if (this.registered) {
      // Bounded: if the registry is unreachable the lease expires on its own.
      await this.retryUntil(Date.now() + 5_000, 'deregister', () => registrar.deregister());
      this.setRegistered(false);
      logger.info('deregistered');
    }
    this.options.probe.close();
    this.options.metrics.draining.set(0);
  }

  /** Stops the loops without touching the registry (tests; a fatal error). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake.fire();
    await Promise.all(this.loops);
    this.options.probe.close();
  }

  private async probeLoop(): Promise<void> {
    const { probe, health, metrics, logger } = this.options;
    while (!this.stopped) {
      const result = await probe.check(health.timeoutMs);
      metrics.healthChecks.inc({ result: result.healthy ? 'pass' : 'fail' });
      if (result.healthy) {
        this.failures = 0;
        this.passes++;
        if (!this.healthy && this.passes >= health.successThreshold) {
          this.healthy = true;
          logger.info('the app passes its health check');
          this.wake.fire();
        }
      } else {
        this.passes = 0;
        this.failures++;
        if (this.healthy && this.failures >= health.failureThreshold) {
          this.healthy = false;
          logger.warn({ reason: result.reason, failures: this.failures }, 'the app fails its health check');
          this.wake.fire();
        } else if (!this.healthy && this.failures === 1) {
          logger.info({ reason: result.reason }, 'the app does not pass its health check yet');
        }
      }
      await this.wake.sleep(health.intervalMs, () => this.stopped);
    }
  }

  private async registryLoop(): Promise<void> {
    while (!this.stopped) {
      let delay: number;
      try {
        delay = await this.reconcile();
        this.backoff.reset();
      } catch (err) {
        delay = this.backoff.next();
        this.logFailure(err, delay);
      }
      await this.wake.sleep(delay, () => this.stopped);
    }
  }

  /** One step towards "registered exactly while healthy"; returns how long to wait before the next. */
  private async reconcile(): Promise<number> {
    const { registrar, logger, heartbeatIntervalMs, health, metrics } = this.options;
    // While draining, only heartbeats: the drain itself decides when to deregister.
    const wanted = this.healthy || this.draining;
    if (this.registered && !wanted) {
      await registrar.deregister();
      this.setRegistered(false);
      metrics.withdrawals.inc();
      logger.warn('withdrew the instance: it gets no calls until its health check passes again');
      return health.intervalMs;
    }
    if (!this.registered && wanted && !this.draining) {
      const record = await registrar.register();
      this.setRegistered(true);
      this.lastHeartbeat = Date.now();
      logger.info(
        { address: record.address, port: record.port, locality: record.locality, again: this.wasRegistered },
        this.wasRegistered ? 'instance registered again' : 'instance registered',
      );
      this.wasRegistered = true;
      return heartbeatIntervalMs;
    }
    if (!this.registered) return health.intervalMs;

    const due = this.lastHeartbeat + heartbeatIntervalMs - Date.now();
    if (due > 0) return due;
    const result = await registrar.heartbeat();
    if (result === 'lost') {
      this.setRegistered(false);
      metrics.leasesLost.inc();
      logger.warn('the instance lease is gone (expired during an outage, or deregistered by someone else): registering again');
      return 0;
    }
    this.lastHeartbeat = Date.now();
    return heartbeatIntervalMs;
  }

  private setRegistered(registered: boolean): void {
    this.registered = registered;
    this.options.metrics.registered.set(registered ? 1 : 0);
  }

  private logFailure(err: unknown, retryInMs: number): void {
    const { logger, metrics } = this.options;
    const transient = !(err instanceof RegistryError) || err.transient;
    metrics.registryErrors.inc({ kind: transient ? 'transient' : 'refused' });
    const fields = { err: err instanceof Error ? err.message : String(err), retryInMs, failures: this.backoff.failures };
    // A refusal (401/403/400) will not heal by itself: say so loudly, and keep trying (credentials may be rotated).
    if (transient) logger.warn(fields, 'registry unreachable; retrying');
    else logger.error(fields, 'the registry refused the agent; retrying');
  }

  /** Retries `op` with backoff until it succeeds or `deadline` passes (then gives up, logged). */
  private async retryUntil<T>(deadline: number, what: string, op: () => Promise<T>): Promise<T | undefined> {
    const backoff = new Backoff({ baseMs: this.options.retry.baseMs, maxMs: this.options.retry.maxMs });
    for (;;) {
      try {
        return await op();
      } catch (err) {
        const wait = Math.min(backoff.next(), deadline - Date.now());
        if (wait <= 0) {
          this.options.logger.error({ err: (err as Error).message }, `${what} failed; giving up`);
          return undefined;
        }
        this.logFailure(err, wait);
        await sleep(wait);
      }
    }
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A sleep that fire() cuts short, so a health change or a drain is acted on at once. */
class Wakeup {
  private waiters = new Set<() => void>();

  fire(): void {
    for (const wake of this.waiters) wake();
    this.waiters.clear();
  }

  sleep(ms: number, cancelled: () => boolean): Promise<void> {
    if (cancelled()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.waiters.add(done);
    });
  }
}
