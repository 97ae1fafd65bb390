// The interactive API reference at /docs: Swagger UI from the swagger-ui-dist package,
// served by the registry itself. No CDN: the registry may run offline, and its CSP
// allows scripts from 'self' only.
import { Router } from 'express';
import { join } from 'node:path';
import getSwaggerUiDir from 'swagger-ui-dist/absolute-path.js';

/** The only files of swagger-ui-dist the page loads. */
const ASSETS = ['swagger-ui.css', 'swagger-ui-bundle.js', 'favicon-32x32.png'] as const;

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Trellis registry API</title>
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"><noscript>The machine-readable document is <a href="/openapi.json">/openapi.json</a>.</noscript></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;

// A file, not an inline script, so the CSP needs no 'unsafe-inline' for scripts.
const INIT = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true });\n`;

/**
 * Swagger UI's React components set inline styles, so /docs alone allows inline styles;
 * scripts stay 'self' only, and "Try it out" may call only this origin.
 */
const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

export function apiDocsRouter(): Router {
  const dir = getSwaggerUiDir();
  const router = Router();
  router.use('/docs', (_req, res, next) => {
    res.setHeader('Content-Security-Policy', DOCS_CSP);
    next();
  });
  router.get('/docs', (_req, res) => {
    res.type('html').send(PAGE);
  });
  router.get('/docs/init.js', (_req, res) => {
    res.type('js').send(INIT);
  });
  for (const asset of ASSETS)
    router.get(`/docs/${asset}`, (_req, res, next) => {
      res.sendFile(join(dir, asset), { maxAge: '1h' }, (error) => error && next(error));
    });
  return router;
}
