// The control plane's HTTP side: health and metrics, what a proxy is being
// served (/debug/config_dump), the model's dropped inputs (/debug/model), and
// the bootstrap a sidecar starts with (/bootstrap/{service}).
import express, { type Express, type Request, type Response } from 'express';
import type { Registry } from 'prom-client';
import { ServiceName } from '@trellis/mesh-schema';
import { opsRouter, requestIds, sendProblem, type Health, type Logger } from '@trellis/runtime';
import type { ProxyKind } from '../resource';
import type { MeshModel, RetainedEndpoint } from '../model';
import type { AdsServer } from '../xds/ads-server';
import type { SnapshotCache } from '../xds/snapshot-cache';
import { bootstrapAccess, debugAccess } from './access';
import { bootstrapHandler, type XdsTransport } from './bootstrap-route';
import { configDump } from './config-dump';
import { problems } from './problem';

export interface HttpAppDeps {
  health: Health;
  registry: Registry;
  cache: SnapshotCache<MeshModel>;
  ads: AdsServer;
  model: () => MeshModel | undefined;
  /** Endpoints kept after a mass lease expiry (shown with the model). */
  retained?: () => RetainedEndpoint[];
  /** Where sidecars reach the xDS port (for rendered bootstraps). */
  xdsAddresses: ReadonlyArray<{ host: string; port: number }>;
  /** How rendered bootstraps reach xDS: TLS (with client certificates), or an xDS token placeholder. */
  xdsTransport: XdsTransport;
  /** Digest of the admin token as it stands (see ./access.ts); undefined: /debug answers loopback only. */
  adminDigest: () => Buffer | undefined;
  /** xDS admits clients without credentials (local development): a bootstrap then protects nothing more. */
  bootstrapOpen: boolean;
  /** Why an xDS token does not prove a service (for /bootstrap); undefined when it does. */
  serviceTokenRefusal: (token: string, service: string) => Promise<string | undefined>;
  logger: Logger;
}

export function createHttpApp(deps: HttpAppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(requestIds(deps.logger));
  app.use(opsRouter(deps.health, deps.registry));
  const onRefused = (endpoint: 'debug' | 'bootstrap') =>
    deps.logger.warn({ endpoint }, 'refused a request without the credential it needs');
  app.use('/debug', debugAccess({ adminDigest: deps.adminDigest, onRefused }));

  /**
   * `?node=<node id>`: what that connected proxy is being served.
   * `?service=<name>&kind=envoy|proxyless`: what a proxy of that service would get.
   */
  app.get('/debug/config_dump', (req: Request, res: Response) => {
    const node = typeof req.query['node'] === 'string' ? req.query['node'] : undefined;
    const service = typeof req.query['service'] === 'string' ? req.query['service'] : undefined;
    if (node !== undefined) {
      const stream = deps.ads.streams().find((s) => s.info.nodeId === node);
      if (!stream) return sendProblem(res, problems.proxyNotConnected(node));
      const snapshot = deps.cache.snapshotOf(stream.info.identity);
      if (!snapshot) return sendProblem(res, problems.notReady());
      return void res.json({ nodeId: node, protocol: stream.info.protocol, connectedAt: stream.info.connectedAt, ...configDump(snapshot) });
    }
    if (service !== undefined) {
      if (!ServiceName.safeParse(service).success) return sendProblem(res, problems.invalidParameter('service', 'must be a DNS label'));
      const kind = req.query['kind'] ?? 'envoy';
      if (kind !== 'envoy' && kind !== 'proxyless')
        return sendProblem(res, problems.invalidParameter('kind', 'must be "envoy" or "proxyless"'));
      const snapshot = deps.cache.peek({ service, kind: kind as ProxyKind });
      if (!snapshot) return sendProblem(res, problems.notReady());
      return void res.json(configDump(snapshot));
    }
    sendProblem(res, problems.invalidParameter('node', 'pass node=<node id> or service=<name>'));
  });

  app.get('/debug/streams', (_req: Request, res: Response) => {
    res.json({
      streams: deps.ads.streams().map((s) => ({ ...s.info, connectedAt: s.info.connectedAt.toISOString() })),
      cache: deps.cache.stats(),
    });
  });

  app.get('/debug/model', (_req: Request, res: Response) => {
    const model = deps.model();
    if (!model) return sendProblem(res, problems.notReady());
    res.json({ revision: model.revision, services: model.services.size, dropped: model.dropped, retained: deps.retained?.() ?? [] });
  });

  app.get(
    '/bootstrap/:service',
    bootstrapAccess({
      adminDigest: deps.adminDigest,
      onRefused,
      open: deps.bootstrapOpen,
      serviceTokenRefusal: deps.serviceTokenRefusal,
    }),
    bootstrapHandler({ model: deps.model, xdsAddresses: deps.xdsAddresses, transport: deps.xdsTransport }),
  );

  app.use((_req: Request, res: Response) => sendProblem(res, problems.notFound()));
  return app;
}
