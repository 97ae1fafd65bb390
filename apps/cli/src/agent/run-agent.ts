// Runs `trellis agent`: the agent, its own /healthz /readyz /metrics, the Envoy
// bootstrap when asked, and — after `--` — the app itself as a child process, so one
// SIGTERM drains the instance before the app is told to stop.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { certificateFilesIn, proxylessBootstrap } from '@trellis/sdk-node';
import express from 'express';
import {
  createLogger,
  createMetricsRegistry,
  Health,
  listenHttp,
  opsRouter,
  type ListeningHttpServer,
  type Logger,
} from '@trellis/runtime';
import { basicCredential, renderEnvoyBootstrap, writeAtomically, writeSidecarSdsFiles } from '../bootstrap/envoy-bootstrap';
import { createRegistryClient } from '../registry/registry-client';
import { Agent } from './agent';
import type { AgentConfig } from './agent-config';
import { createHealthProbe } from './health-probe';
import { createAgentMetrics, type AgentMetrics } from './metrics';
import { registryRegistrar } from './registrar';
import { createWorkloadCertificate } from './workload-identity';
import { XdsRelay } from './xds-relay';

/** How long the app gets to exit after the agent has deregistered it, before SIGKILL. */
const APP_STOP_GRACE_MS = 20_000;

export async function runAgent(config: AgentConfig, command: string[]): Promise<number> {
  const logger = createLogger('agent', config.logLevel).child({ service: config.service, instance: config.registration.id });
  const metricsRegistry = createMetricsRegistry('agent');
  const metrics = createAgentMetrics(metricsRegistry);
  const health = new Health();

  const client = createRegistryClient({ baseUrl: config.registryUrl, authorization: basicCredential(config.service, config.secret) });
  const agent = new Agent({
    service: config.service,
    instanceId: config.registration.id,
    registrar: registryRegistrar(client, config.service, config.registration),
    probe: createHealthProbe(config.health),
    health: {
      intervalMs: config.healthIntervalMs,
      timeoutMs: config.healthTimeoutMs,
      failureThreshold: config.failureThreshold,
      successThreshold: config.successThreshold,
    },
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    drainMs: config.drainMs,
    retry: { baseMs: 500, maxMs: 30_000 },
    logger,
    metrics,
  });
  health.addCheck('registered', () => agent.serving);

  let server: ListeningHttpServer['server'] | undefined;
  if (config.http) {
    const app = express();
    app.disable('x-powered-by');
    app.use(opsRouter(health, metricsRegistry));
    // The apps' listener, with their slow-client limits (Node's own wait 60 s for headers, forever for a silent socket).
    const listening = await listenHttp(app, config.http.host, config.http.port);
    server = listening.server;
    logger.info({ host: config.http.host, port: listening.port }, 'agent health and metrics listening');
  }

  // The app and its sidecar read the certificate files from their start: have them first.
  const relay = config.xdsRelay && config.certificate ? createRelay(config, logger, metrics) : undefined;
  const certificate = config.certificate
    ? createWorkloadCertificate({ ...config, certificate: config.certificate }, logger, metrics, () => relay?.renewCredentials())
    : undefined;
  if (certificate) {
    health.addCheck('workload certificate', () => (certificate.certificate?.expiresAt.getTime() ?? 0) > Date.now());
    await certificate.keepRenewed();
  }

  // An Envoy sidecar reads the certificate over path-based SDS: the files naming it sit beside it.
  if (config.envoy && config.certificate) {
    const written = await writeSidecarSdsFiles(config.certificate.dir);
    logger.info({ files: written }, 'wrote the SDS files of the workload certificate');
  }
  const bootstrap = config.envoy ? keepBootstrapFresh(config, logger) : undefined;
  if (bootstrap) await bootstrap.first;

  const appEnv: NodeJS.ProcessEnv = {};
  if (relay) {
    await relay.start();
    const path = config.xdsRelay?.grpcBootstrapPath;
    if (path) {
      await mkdir(dirname(path), { recursive: true });
      await writeAtomically(path, `${JSON.stringify(grpcBootstrap(config, relay.target), null, 2)}\n`);
      appEnv['GRPC_XDS_BOOTSTRAP'] = path;
      logger.info({ path, relay: relay.target }, 'wrote the grpc-js-xds bootstrap');
    }
  }

  const child = command.length ? startApp(command, logger, appEnv) : undefined;
  agent.start();

  const exitCode = await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping');
      health.startDraining();
      void (async () => {
        await agent.drain();
        if (child) resolve(await stopApp(child, logger));
        else resolve(0);
      })();
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    // The app went away by itself: nothing is left to drain; take the instance out now.
    child?.once('exit', (code, signal) => {
      if (stopping) return;
      stopping = true;
      logger.warn({ code, signal }, 'the app exited; deregistering');
      void agent.drain({ immediate: true }).then(() => resolve(code ?? 1));
    });
  });

  bootstrap?.stop();
  certificate?.stop();
  await relay?.stop();
  if (server) {
    server.closeAllConnections();
    await new Promise((resolve) => server!.close(resolve));
  }
  logger.info({ exitCode }, 'agent stopped');
  return exitCode;
}

function startApp(command: string[], logger: Logger, env: NodeJS.ProcessEnv): ChildProcess {
  const [file, ...args] = command;
  const child = spawn(file!, args, { stdio: 'inherit', env: { ...process.env, ...env } });
  child.once('error', (err) => logger.error({ err: err.message, command: file }, 'the app could not be started'));
  logger.info({ command: file, pid: child.pid }, 'started the app');
  return child;
}

async function stopApp(child: ChildProcess, logger: Logger): Promise<number> {
  if (child.exitCode !== null || child.signalCode !== null) return 0;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const killer = setTimeout(() => {
    logger.warn({ graceMs: APP_STOP_GRACE_MS }, 'the app did not stop in time; killing it');
    child.kill('SIGKILL');
  }, APP_STOP_GRACE_MS);
  const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  clearTimeout(killer);
  logger.info({ code, signal }, 'the app stopped');
  // Stopped on request: a clean stop whatever the app's own exit status on SIGTERM.
  return 0;
}

/**
 * Renders the Envoy bootstrap now (retrying until it works: Envoy cannot start
 * without it) and again before the xDS token in it expires, so an Envoy restart
 * always finds a valid token.
 */
function keepBootstrapFresh(config: AgentConfig, logger: Logger): { first: Promise<void>; stop(): void } {
  const envoy = config.envoy!;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const render = async (): Promise<void> => {
    let delay = 1000;
    for (;;) {
      try {
        const staticToken = envoy.staticTokenFile ? await readFile(envoy.staticTokenFile, 'utf8') : undefined;
        const rendered = await renderEnvoyBootstrap(
          {
            controlPlaneUrl: envoy.controlPlaneUrl,
            service: config.service,
            nodeId: config.registration.id,
            appPort: envoy.appPort,
            locality: config.registration.locality,
            ...envoy.sidecar,
          },
          {
            // Production: authz's mTLS port and the workload certificate; the credential only for a local-development authz.
            ...(envoy.authzMtlsUrl && config.certificate
              ? { authz: { url: envoy.authzMtlsUrl, certificates: certificateFilesIn(config.certificate.dir) } }
              : envoy.authzUrl
                ? { authz: { url: envoy.authzUrl, secret: config.secret } }
                : {}),
            ...(staticToken ? { staticToken } : {}),
          },
        );
        if (await writeAtomically(envoy.bootstrapPath, rendered.text))
          logger.info({ path: envoy.bootstrapPath, tokenExpiresAt: rendered.tokenExpiresAt }, 'wrote the Envoy bootstrap');
        if (rendered.tokenExpiresAt && !stopped) {
          // Again at two thirds of the token's remaining life.
          const refreshIn = Math.max(10_000, ((rendered.tokenExpiresAt.getTime() - Date.now()) * 2) / 3);
          timer = setTimeout(() => void render(), refreshIn);
          timer.unref();
        }
        return;
      } catch (err) {
        if (stopped) return;
        logger.warn({ err: (err as Error).message, retryInMs: delay }, 'could not render the Envoy bootstrap; retrying');
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 30_000);
      }
    }
  };
  return {
    first: render(),
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}

/** The relay's upstream credential: the workload certificate, re-read for every new channel (after each renewal). */
function createRelay(config: AgentConfig, logger: Logger, metrics: AgentMetrics): XdsRelay {
  const relay = config.xdsRelay!;
  const files = certificateFilesIn(config.certificate!.dir);
  return new XdsRelay({
    service: config.service,
    listen: relay.listen,
    upstream: relay.upstream,
    ...(relay.serverName ? { serverName: relay.serverName } : {}),
    maxStreamsPerUpstream: relay.maxStreamsPerUpstream,
    limits: relay.limits,
    credentials: async () => {
      const [ca, key, cert] = await Promise.all([
        readFile(relay.serverCaFile ?? files.caCertificateFile),
        readFile(files.privateKeyFile),
        readFile(files.certificateFile),
      ]);
      return credentials.createSsl(ca, key, cert);
    },
    logger,
    metrics,
  });
}

/** What a proxyless app of this instance starts with: the relay as its xDS server, the agent's certificate files. */
function grpcBootstrap(config: AgentConfig, relayTarget: string): Record<string, unknown> {
  return proxylessBootstrap({
    xdsServer: relayTarget,
    service: config.service,
    nodeId: config.registration.id,
    locality: config.registration.locality,
    ...(config.certificate ? { certificates: certificateFilesIn(config.certificate.dir) } : {}),
  });
}
