// The Check worker: a worker thread of authz's process that owns the ext_authz gRPC port
// and decides Checks in an isolate that does nothing else (check-worker/check-worker.ts
// starts it; docs/benchmarks.md, authz, says why: the same grpc-js and node:http2 call
// path costs ~4 µs more per Check in an isolate that also runs etcd's grpc-js client,
// ioredis and the HTTP servers). It decides from a mirror of the main thread's registry
// view and the tokens the main thread handed it; a token it lacks, an inbound token and
// a Cloudflare Access token are the main thread's to answer (check-worker/protocol.ts).
// Built beside main.js as check.worker.js (tools/build/bundle.mjs).
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { Registry } from 'prom-client';
import { createLogger, Health } from '@trellis/runtime';
import { pendingTlsConnections, stopGrpcServer, TlsMaterialProvider } from '@trellis/runtime/grpc';
import { CheckService } from './check/check-service';
import { MeshPolicy } from './check/mesh-policy';
import { MainThreadCalls } from './check-worker/main-thread-calls';
import type { CheckWorkerSettings, MainToWorker, WorkerToMain } from './check-worker/protocol';
import { RegistryMirror } from './check-worker/registry-mirror';
import { accessVerifierVia, inboundVerifierVia } from './check-worker/worker-calls';
import { WorkerTokens } from './check-worker/worker-tokens';
import { startGrpcServer } from './grpc/grpc-server';
import { AuthzMetrics } from './metrics';

async function runCheckWorker(port: MessagePort, settings: CheckWorkerSettings): Promise<void> {
  const logger = createLogger('authz', settings.logLevel).child({ thread: 'check-worker' });
  const post = (message: WorkerToMain) => port.postMessage(message);
  // The worker's own metrics (same names); the main thread merges them into its /metrics on each scrape.
  const registry = new Registry();
  const metrics = new AuthzMetrics(registry);
  const mirror = new RegistryMirror();
  const calls = new MainThreadCalls(post, settings.callTimeoutMs);
  const tokens = new WorkerTokens(calls, metrics);
  const checks = new CheckService(new MeshPolicy(mirror), tokens, inboundVerifierVia(calls), accessVerifierVia(calls), metrics, logger, {
    allowInsecureCallers: settings.allowInsecureCallers,
  });
  // The gRPC health service follows the main thread's readiness (registry loaded, a key can sign, this worker serving).
  let mainReady = false;
  const health = new Health();
  health.addCheck('authz', () => mainReady);
  const tls = settings.tls ? new TlsMaterialProvider(settings.tls) : undefined;

  // Set once the gRPC server is up; a stop before that has nothing to drain.
  const serving: { stop?: (drainMs: number) => Promise<void> } = {};
  port.on('message', (message: MainToWorker) => {
    switch (message.type) {
      case 'registry':
        mirror.apply(message);
        return;
      case 'signer':
        tokens.setSigner(message);
        return;
      case 'ready':
        mainReady = message.ready;
        void health.recheck();
        return;
      case 'tls':
        tls?.update(message.material);
        return;
      case 'reply':
        calls.settle(message.id, message.reply);
        return;
      case 'metrics':
        void registry.getMetricsAsJSON().then((json) => post({ type: 'metrics', id: message.id, metrics: json }));
        return;
      case 'stop':
        void (serving.stop?.(message.drainMs) ?? Promise.resolve()).then(() => {
          post({ type: 'stopped' });
          port.close();
        });
        return;
    }
  });

  const grpc = await startGrpcServer(
    checks,
    health,
    settings.host,
    settings.port,
    {
      tls,
      requireClientCertificate: settings.requireClientCertificate,
      trustDomain: () => settings.trustDomain,
      tlsLimits: settings.tlsLimits,
      connectionLimits: settings.connectionLimits,
      onTlsRefused: (reason) => metrics.tlsRefused.inc({ port: 'grpc', reason }),
      onStreamsKept: (streams) => metrics.grpcConnections.inc({ streams }),
    },
    logger,
  );
  metrics.readTlsPendingFrom('grpc', () => pendingTlsConnections(grpc.server));
  serving.stop = async (drainMs) => {
    health.startDraining();
    await stopGrpcServer(grpc.server, drainMs);
    calls.abandon('the Check worker stopped');
  };
  post({ type: 'serving', port: grpc.port });
}

if (!parentPort) throw new Error('check.worker.js runs as a worker thread of authz (check-worker/check-worker.ts starts it)');
void runCheckWorker(parentPort, workerData as CheckWorkerSettings);
