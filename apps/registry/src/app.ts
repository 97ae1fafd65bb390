// The registry's express app, built from its dependencies so tests can start
// it on port 0 against a real etcd.
import { randomBytes } from 'node:crypto';
import express from 'express';
import type { RequestHandler } from 'express';
import helmet from 'helmet';
import type { MeshStore } from '@trellis/mesh-schema';
import type { Health, Logger } from '@trellis/runtime';
import { opsRouter, requestIds } from '@trellis/runtime';
import type { Registry } from 'prom-client';
import { apiV1Router } from './api';
import type { Authenticator } from './auth';
import { requireBearer } from './auth';
import { ServiceCatalog } from './catalog';
import { jsonBody, notFoundHandler, problemErrorHandler, requestMetrics } from './http';
import type { RegistryMetrics } from './metrics';
import { buildOpenApiDocument } from './openapi';
import { instrumentStore } from './store';
import { apiDocsRouter } from './ui/api-docs';
import { uiRouter } from './ui/router';
import { UiSessions } from './ui/session';
import type { RegistryView } from './view';

export interface AppOptions {
  store: MeshStore;
  view: RegistryView;
  authenticator: Authenticator;
  health: Health;
  metricsRegistry: Registry;
  metrics: RegistryMetrics;
  logger: Logger;
  readsRequireAuth?: boolean;
  maxBodyBytes?: number;
  /** Signs CSRF tokens (a fixed one, or one followed from a file); a random one is made when absent (fine for one replica). */
  csrfSecret?: string | { readonly current: string | undefined };
  /** The UI is reached over HTTPS: Secure cookies, HSTS, upgrade-insecure-requests. */
  secureCookies?: boolean;
}

export function createApp(options: AppOptions): express.Express {
  const { authenticator, health, metricsRegistry, metrics, logger } = options;
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024;
  const catalog = new ServiceCatalog(instrumentStore(options.store, metrics), options.view, metrics, logger);
  const sessions = new UiSessions(csrfSecretSource(options.csrfSecret), options.secureCookies ?? false);
  const openApiDocument = buildOpenApiDocument();

  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.set('query parser', 'simple');
  app.use(requestIds(logger));
  app.use(requestMetrics(metrics, logger));
  const https = options.secureCookies ?? false;
  app.use(
    helmet({
      // Over plain HTTP (local meshes, behind a TLS-terminating proxy that says so) upgrading would break the forms.
      strictTransportSecurity: https,
      contentSecurityPolicy: {
        directives: {
          upgradeInsecureRequests: https ? [] : null,
          defaultSrc: ["'none'"],
          styleSrc: ["'self'"],
          imgSrc: ["'self'"],
          formAction: ["'self'"],
          frameAncestors: ["'none'"],
          baseUri: ["'none'"],
        },
      },
    }),
  );

  app.use(opsRouter(health, metricsRegistry));
  app.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument);
  });

  const authenticate = requireBearer(authenticator, metrics, logger);
  const pass: RequestHandler = (_req, _res, next) => next();
  const guards = {
    read: [options.readsRequireAuth ? authenticate : pass],
    write: [authenticate],
    json: jsonBody(maxBodyBytes),
  };
  app.use('/api/v1', apiV1Router(catalog, guards));
  app.use(
    uiRouter({ catalog, authenticator, sessions, metrics, logger, readsRequireAuth: options.readsRequireAuth ?? false, maxBodyBytes }),
  );
  app.use(apiDocsRouter());

  app.use(notFoundHandler);
  app.use(problemErrorHandler(logger));
  return app;
}

function csrfSecretSource(secret: AppOptions['csrfSecret']): () => Buffer {
  // No secret (or a file not there yet): one of this process's own.
  const random = randomBytes(32);
  if (secret === undefined || secret === '') return () => random;
  if (typeof secret === 'string') {
    const fixed = Buffer.from(secret);
    return () => fixed;
  }
  return () => (secret.current === undefined ? random : Buffer.from(secret.current));
}
