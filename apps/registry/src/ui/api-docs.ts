// A rendered page of the OpenAPI document, built on the server (the registry
// may run offline, so no CDN-hosted viewer).
import type { buildOpenApiDocument } from '../openapi';
import { html } from './html';
import type { PageContext } from './pages';
import { layout } from './pages';

type OpenApiDocument = ReturnType<typeof buildOpenApiDocument>;

interface Operation {
  summary?: string;
  description?: string;
  security?: unknown[];
  parameters?: Array<{ name?: string; in?: string; required?: boolean }>;
  requestBody?: { content?: Record<string, { schema?: unknown }> };
  responses?: Record<string, { description?: string }>;
}

export function apiDocsPage(ctx: PageContext, doc: OpenApiDocument): string {
  const paths = Object.entries(doc.paths ?? {});
  const operations = paths.flatMap(([path, item]) =>
    (['get', 'post', 'put', 'delete'] as const)
      .filter((method) => (item as Record<string, unknown>)[method])
      .map((method) => {
        const op = (item as Record<string, Operation>)[method]!;
        const body = op.requestBody?.content?.['application/json']?.schema;
        return html`<section class="operation" id="${method}-${path}"><h2><code>${method.toUpperCase()} ${path}</code></h2>
<p>${op.summary ?? ''}${op.security?.length ? ' · requires a bearer token' : ''}</p>${op.description ? html`<p>${op.description}</p>` : ''}
${op.parameters?.length ? html`<p>Parameters: ${op.parameters.map((p) => `${p.name} (${p.in}${p.required ? ', required' : ''})`).join('; ')}</p>` : ''}
${body ? html`<details><summary>Request body</summary><pre>${JSON.stringify(body, null, 2)}</pre></details>` : ''}
<ul>${Object.entries(op.responses ?? {}).map(([status, response]) => html`<li><strong>${status}</strong> ${response.description ?? ''}</li>`)}</ul></section>`;
      }),
  );
  const schemas = Object.entries(doc.components?.schemas ?? {}).map(
    ([name, schema]) =>
      html`<details id="schema-${name}"><summary>${name}</summary><pre>${JSON.stringify(schema, null, 2)}</pre></details>`,
  );
  return layout(
    ctx,
    'API',
    html`<h1>${doc.info.title} API ${doc.info.version}</h1><p>${doc.info.description ?? ''}</p><p>Machine-readable: <a href="/openapi.json">/openapi.json</a></p>${operations}<h2>Schemas</h2>${schemas}`,
  );
}
