// The main thread's side of the Check worker (../check.worker.ts): starts it, feeds it
// (the registry from the MeshWatcher, which key signs, readiness, authz's TLS material),
// answers its calls (tokens through MeshTokenIssuer, inbound and Access verification),
// collects its metrics for /metrics, restarts it when it dies and drains it on shutdown.
// While no worker serves, the gRPC port is closed and readiness is false: Envoy's
// ext_authz (failure_mode_allow off) denies, so a crash fails closed.
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import type { MeshWatcher } from '@trellis/mesh-schema';
import type { Health, Logger } from '@trellis/runtime';
import type { AuthzMetrics } from '../metrics';
import type { ServingTls } from '@trellis/runtime/grpc';
import type { CheckWorkerSettings, MainToWorker, SignerMessage, WorkerToMain } from './protocol';
import { registryMessageOf, registrySnapshotOf } from './registry-mirror';
import { answerWorkerCall, type CallAnswerers } from './worker-calls';

type MetricJson = MetricObjectWithValues<MetricValue<string>>;

export interface CheckWorkerDeps {
  /** The worker's script: check.worker.js beside authz's bundle. */
  script: string;
  settings: CheckWorkerSettings;
  watcher: MeshWatcher;
  /** The key that signs now and the issuer tokens carry. */
  signer: () => SignerMessage;
  answerers: CallAnswerers;
  tls: ServingTls | undefined;
  /** The first wait before a dead worker is restarted (doubling to 5 s while restarts fail); default 100 ms. */
  restartDelayMs?: number;
  health: Health;
  metrics: AuthzMetrics;
  logger: Logger;
}

const RESTART_FIRST_MS = 100;
const RESTART_MAX_MS = 5_000;
/** How long a scrape waits for the worker's metrics before answering with the main thread's alone. */
const METRICS_TIMEOUT_MS = 2_000;

export class CheckWorker {
  private current: Worker | undefined;
  private isServing = false;
  private everServed = false;
  private stopping = false;
  private restartDelayMs: number;
  private restartTimer: NodeJS.Timeout | undefined;
  private lastSigner: SignerMessage | undefined;
  private nextMetricsId = 1;
  private readonly metricsWaiting = new Map<number, (metrics: unknown[]) => void>();
  private port: number;

  private constructor(private readonly deps: CheckWorkerDeps) {
    this.port = deps.settings.port;
    this.restartDelayMs = deps.restartDelayMs ?? RESTART_FIRST_MS;
  }

  /** Starts the worker; resolves once it serves, rejects when the first one cannot (e.g. the port is taken). */
  static async start(deps: CheckWorkerDeps): Promise<CheckWorker> {
    const worker = new CheckWorker(deps);
    deps.watcher.on('update', (update) => {
      const message = registryMessageOf(update, deps.watcher.state, deps.watcher.ready);
      if (message) worker.post(message);
      worker.pushSigner();
    });
    deps.health.onChange((ready) => worker.post({ type: 'ready', ready }));
    deps.tls?.onChange((material) => worker.post({ type: 'tls', material }));
    await worker.spawn();
    return worker;
  }

  /** The gRPC port the worker serves Checks on. */
  get grpcPort(): number {
    return this.port;
  }

  /** A worker is up and serving Checks. */
  get serving(): boolean {
    return this.isServing;
  }

  /** The worker thread now serving (tests end it to see a restart). */
  get thread(): Worker | undefined {
    return this.current;
  }

  /** Tells the worker which key signs now, when that changed. */
  pushSigner(): void {
    const signer = this.deps.signer();
    if (this.lastSigner && this.lastSigner.kid === signer.kid && this.lastSigner.issuer === signer.issuer) return;
    this.lastSigner = signer;
    this.post(signer);
  }

  /** authz's metrics: the main thread's registry with the worker's counts added (same names, summed). */
  async withWorkerMetrics(main: Registry): Promise<Registry> {
    const [mainJson, workerJson] = await Promise.all([main.getMetricsAsJSON(), this.workerMetrics()]);
    if (workerJson.length === 0) return main;
    // Metrics only the main thread has keep their own value: prom-client would drop or average some (aggregator `omit`).
    const inWorker = new Set(workerJson.map((m) => m.name));
    const mainSide = mainJson.map((m) => (inWorker.has(m.name) ? m : { ...m, aggregator: 'first' as const }));
    return AggregatorRegistry.aggregate([mainSide, workerJson]);
  }

  /** Drains the worker's gRPC server (at most `drainMs`) and ends it; no restart after this. */
  async stop(drainMs: number): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const worker = this.current;
    if (!worker) return;
    const exited = once(worker, 'exit');
    worker.postMessage({ type: 'stop', drainMs } satisfies MainToWorker);
    const timeout = new Promise((resolve) => setTimeout(resolve, drainMs + 2_000).unref());
    if ((await Promise.race([exited.then(() => 'exited'), timeout])) !== 'exited') await worker.terminate();
  }

  private post(message: MainToWorker): void {
    this.current?.postMessage(message);
  }

  private workerMetrics(): Promise<MetricJson[]> {
    const worker = this.current;
    if (!worker || !this.isServing) return Promise.resolve([]);
    const id = this.nextMetricsId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.metricsWaiting.delete(id);
        resolve([]);
      }, METRICS_TIMEOUT_MS);
      this.metricsWaiting.set(id, (metrics) => {
        clearTimeout(timer);
        resolve(metrics as MetricJson[]);
      });
      worker.postMessage({ type: 'metrics', id } satisfies MainToWorker);
    });
  }

  private spawn(): Promise<void> {
    const { deps } = this;
    const worker = new Worker(deps.script, {
      workerData: { ...deps.settings, port: this.port, tls: deps.tls?.material } satisfies CheckWorkerSettings,
    });
    this.current = worker;
    // What it decides from, before its first Check: the registry, the signer, readiness.
    worker.postMessage(registrySnapshotOf(deps.watcher.state, deps.watcher.ready) satisfies MainToWorker);
    this.lastSigner = deps.signer();
    worker.postMessage({ ...this.lastSigner } satisfies MainToWorker);
    worker.postMessage({ type: 'ready', ready: deps.health.isReady } satisfies MainToWorker);

    return new Promise<void>((resolve, reject) => {
      let served = false;
      worker.on('message', (message: WorkerToMain) => {
        switch (message.type) {
          case 'serving':
            served = true;
            this.everServed = true;
            this.port = message.port;
            this.isServing = true;
            this.restartDelayMs = deps.restartDelayMs ?? RESTART_FIRST_MS;
            deps.logger.info({ grpcPort: message.port }, 'the Check worker serves');
            void deps.health.recheck();
            resolve();
            return;
          case 'call':
            deps.metrics.checkWorkerCalls.inc({ kind: message.call.kind });
            void answerWorkerCall(message.call, deps.answerers).then((reply) =>
              worker.postMessage({ type: 'reply', id: message.id, reply } satisfies MainToWorker),
            );
            return;
          case 'metrics':
            this.metricsWaiting.get(message.id)?.(message.metrics);
            this.metricsWaiting.delete(message.id);
            return;
          case 'stopped':
            return;
        }
      });
      // What ended the worker, if anything threw: the reason a first worker gives authz's start (its port taken, say).
      let failure: Error | undefined;
      worker.on('error', (err) => {
        failure ??= err;
        deps.logger.error({ err }, 'the Check worker failed');
      });
      worker.on('exit', (code) => {
        if (this.current === worker) this.current = undefined;
        this.isServing = false;
        void deps.health.recheck();
        if (!served)
          reject(
            new Error(`the Check worker exited (code ${code}) before it served${failure ? `: ${failure.message}` : ''}`, {
              cause: failure,
            }),
          );
        // A first worker that never served fails authz's start instead (startAuthz rejects).
        if (this.stopping || !this.everServed) return;
        deps.metrics.checkWorkerRestarts.inc();
        deps.logger.error({ code, restartInMs: this.restartDelayMs }, 'the Check worker exited; Checks fail closed until it is restarted');
        this.restartTimer = setTimeout(() => {
          this.spawn().catch((err: unknown) => deps.logger.error({ err }, 'restarting the Check worker failed'));
        }, this.restartDelayMs);
        this.restartDelayMs = Math.max(this.restartDelayMs, Math.min(this.restartDelayMs * 2, RESTART_MAX_MS));
      });
    });
  }
}
