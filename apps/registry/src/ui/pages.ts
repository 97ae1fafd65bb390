// Server-rendered pages. Plain HTML forms, no client script; every user string
// goes through the escaping `html` template.
import type { HistoryEntry, InstanceRecord, ProxyStatus, ServiceRecord, Versioned } from '@trellis/mesh-schema';
import type { Principal } from '../auth';
import type { Topology } from '../topology';
import { canonicalJson, diffLines } from './diff';
import { html, join } from './html';
import type { Html } from './html';
import type { LastNack, NackCause } from './nack-cause';
import type { FormErrors, FormField, FormValues } from './service-form';
import { CSRF_FIELD } from './session';
import { renderTopologySvg } from './topology-svg';

export interface PageContext {
  principal?: Principal;
  csrfToken: string;
}

export const serviceUrl = (name: string): string => `/ui/services/${encodeURIComponent(name)}`;

export function layout(ctx: PageContext, title: string, body: Html): string {
  const who = ctx.principal
    ? html`<form method="post" action="/ui/logout" class="inline">${csrf(ctx)}<span class="who">signed in as ${ctx.principal.actor.replace(/^team:/, 'team ')}</span> <button type="submit">Sign out</button></form>`
    : html`<a href="/ui/login">Sign in</a>`;
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Trellis registry</title><link rel="stylesheet" href="/ui/assets/style.css"></head>
<body><header><a class="brand" href="/ui/services">Trellis registry</a>
<nav><a href="/ui/services">Services</a> <a href="/ui/services/new">New service</a> <a href="/ui/topology">Topology</a> <a href="/docs">API</a></nav>
<div class="session">${who}</div></header>
<main>${body}</main></body></html>`.value;
}

function csrf(ctx: PageContext): Html {
  return html`<input type="hidden" name="${CSRF_FIELD}" value="${ctx.csrfToken}">`;
}

/** What each mTLS mode means for callers, as the service page and the form say it. */
const MTLS_MODES = {
  off: 'off — plaintext',
  permissive: 'permissive — TLS and plaintext accepted',
  strict: 'strict — only callers with a workload certificate',
} as const;

export function serviceListPage(ctx: PageContext, services: Versioned<ServiceRecord>[], q: string): string {
  const rows = services.map(
    ({ value: { spec, updated } }) =>
      html`<tr><td><a href="${serviceUrl(spec.name)}">${spec.name}</a></td><td>${spec.team}</td><td>${spec.protocol}</td><td>${spec.port}</td><td class="mtls ${spec.mtls ?? 'off'}">${spec.mtls ?? 'off'}</td><td>${spec.dependencies.map((d) => d.service).join(', ')}</td><td>${updated.at}</td></tr>`,
  );
  return layout(
    ctx,
    'Services',
    html`<h1>Services</h1>
<form method="get" action="/ui/services" class="search" role="search"><label for="q">Search</label> <input id="q" name="q" value="${q}" placeholder="name or description"> <button type="submit">Search</button></form>
${
  services.length === 0
    ? html`<p class="empty">${q ? 'No service matches.' : 'No services registered yet.'} <a href="/ui/services/new">Register one</a>.</p>`
    : html`<table class="services"><thead><tr><th>Name</th><th>Team</th><th>Protocol</th><th>Port</th><th>mTLS</th><th>Calls</th><th>Updated</th></tr></thead><tbody>${rows}</tbody></table>`
}`,
  );
}

export interface ServicePageData {
  service: Versioned<ServiceRecord>;
  instances: InstanceRecord[];
  callers: string[];
  callees: Array<{ name: string; registered: boolean }>;
  proxies: ProxyStatus[];
  /** The change to this service or a service it calls that a rejected config came from. */
  nackCause: (nack: LastNack) => NackCause | undefined;
}

/** Where a change's diff is shown: its entry on the service's history page. */
export const changeUrl = (change: Pick<HistoryEntry, 'service' | 'generation'>): string =>
  `${serviceUrl(change.service)}/history#generation-${change.generation}`;

function nackCause(cause: NackCause | undefined): Html | string {
  if (!cause) return '';
  const { change } = cause;
  const who = `(${change.action} by ${change.actor} at ${change.at})`;
  if (cause.basis === 'revision') {
    return html` <span class="cause">built from mesh revision ${cause.meshRevision}, whose newest change is <a href="${changeUrl(change)}">${change.service} generation ${change.generation}</a> ${who}</span>`;
  }
  return html` <span class="cause">latest change before it: <a href="${serviceUrl(change.service)}/history">${change.service} generation ${change.generation}</a> ${who}</span>`;
}

export function servicePage(ctx: PageContext, data: ServicePageData): string {
  const { spec, generation, updated, created } = data.service.value;
  const link = (name: string, registered = true) =>
    registered ? html`<a href="${serviceUrl(name)}">${name}</a>` : html`<span class="missing">${name} (missing)</span>`;
  const instances = data.instances.length
    ? html`<table class="instances"><thead><tr><th>Id</th><th>Address</th><th>Platform</th><th>Locality</th><th>Labels</th><th>Registered</th></tr></thead><tbody>${data.instances.map(
        (i) =>
          html`<tr><td>${i.id}</td><td>${i.address}:${i.port}</td><td>${i.platform}</td><td>${[i.locality.region, i.locality.zone, i.locality.subZone].filter(Boolean).join('/')}</td><td>${Object.entries(
            i.labels,
          )
            .map(([k, v]) => `${k}=${v}`)
            .join(', ')}</td><td>${i.registeredAt}</td></tr>`,
      )}</tbody></table>`
    : html`<p class="empty">No live instances.</p>`;
  const proxies = data.proxies.length
    ? html`<table class="proxies"><thead><tr><th>Node</th><th>Control plane</th><th>Type</th><th>Last ACKed</th><th>Rejected config</th></tr></thead><tbody>${data.proxies.flatMap(
        (p) =>
          Object.entries(p.types).map(([type, status]) => {
            const nack = status.lastNack;
            return html`<tr><td>${p.nodeId}</td><td>${p.controlPlane}</td><td>${type}</td><td>${status.lastAckedVersion ?? '—'}</td><td>${
              nack
                ? html`<span class="nack">version ${nack.version} rejected at ${nack.at}: ${nack.error}</span>${nackCause(data.nackCause(nack))}`
                : '—'
            }</td></tr>`;
          }),
      )}</tbody></table>`
    : html`<p class="empty">No proxy has connected to the control plane for this service.</p>`;
  return layout(
    ctx,
    spec.name,
    html`<h1>${spec.name}</h1>
<p class="description">${spec.description}</p>
<dl class="facts"><dt>Team</dt><dd>${spec.team}</dd><dt>Protocol</dt><dd>${spec.protocol}</dd><dt>Port</dt><dd>${spec.port}</dd>
<dt>mTLS</dt><dd class="mtls ${spec.mtls ?? 'off'}">${MTLS_MODES[spec.mtls ?? 'off']}</dd>
<dt>Generation</dt><dd>${generation} (revision ${data.service.modRevision})</dd><dt>Created</dt><dd>${created.at} by ${created.actor}</dd><dt>Updated</dt><dd>${updated.at} by ${updated.actor}</dd>
${spec.ingress ? html`<dt>Public</dt><dd>${spec.ingress.host}${spec.ingress.pathPrefix}${spec.ingress.cloudflareAccess ? ' (Cloudflare Access)' : ''}</dd>` : ''}</dl>
<p class="actions"><a href="${serviceUrl(spec.name)}/edit">Edit</a> <a href="${serviceUrl(spec.name)}/history">History</a></p>
<section class="neighbours"><div><h2>Callers</h2><ul>${data.callers.length ? data.callers.map((c) => html`<li>${link(c)}</li>`) : html`<li class="empty">none</li>`}</ul></div>
<div class="self"><h2>${spec.name}</h2></div>
<div><h2>Calls</h2><ul>${data.callees.length ? data.callees.map((c) => html`<li>${link(c.name, c.registered)}</li>`) : html`<li class="empty">none</li>`}</ul></div></section>
<h2>Instances</h2>${instances}
<h2>Proxies</h2>${proxies}
<h2>Definition</h2><pre class="definition">${canonicalJson(spec)}</pre>
<form method="post" action="${serviceUrl(spec.name)}/delete" class="danger">${csrf(ctx)}<input type="hidden" name="modRevision" value="${data.service.modRevision}"><button type="submit">Delete service</button></form>`,
  );
}

const FIELD_LABELS: Record<FormField, string> = {
  name: 'Name',
  team: 'Owning team',
  description: 'Description',
  protocol: 'Protocol',
  port: 'Port',
  mtls: 'mTLS (off → permissive → strict)',
  dependencies: 'Calls (downstream services, one per line)',
  timeoutMs: 'Request timeout (ms)',
  retries: 'Retry attempts',
  ingressHost: 'Public host',
  ingressPathPrefix: 'Public path prefix',
  accessTeamDomain: 'Cloudflare Access team domain',
  accessAudience: 'Cloudflare Access audience (AUD tag)',
};

export function serviceFormPage(
  ctx: PageContext,
  options: { mode: 'create' | 'edit'; values: FormValues; errors?: FormErrors; modRevision?: string },
): string {
  const { values, errors = {} } = options;
  const field = (name: FormField, control: Html) => {
    const fieldErrors = errors[name] ?? [];
    return html`<div class="field${fieldErrors.length ? ' invalid' : ''}"><label for="${name}">${FIELD_LABELS[name]}</label>${control}${fieldErrors.map(
      (message) => html`<p class="error" id="${name}-error" data-field="${name}">${message}</p>`,
    )}</div>`;
  };
  const input = (name: FormField, attrs: Html = html``) =>
    field(
      name,
      html`<input id="${name}" name="${name}" value="${values[name]}" ${attrs}${errors[name] ? html` aria-invalid="true" aria-describedby="${name}-error"` : ''}>`,
    );
  const protocols = ['http', 'http2', 'grpc', 'tcp'].map(
    (p) => html`<option value="${p}"${values.protocol === p ? html` selected` : ''}>${p}</option>`,
  );
  const mtlsModes = (['off', 'permissive', 'strict'] as const).map(
    (m) => html`<option value="${m}"${values.mtls === m ? html` selected` : ''}>${MTLS_MODES[m]}</option>`,
  );
  const action = options.mode === 'create' ? '/ui/services' : serviceUrl(values.name);
  return layout(
    ctx,
    options.mode === 'create' ? 'New service' : `Edit ${values.name}`,
    html`<h1>${options.mode === 'create' ? 'New service' : `Edit ${values.name}`}</h1>
${errors._form?.length ? html`<div class="form-errors" role="alert">${errors._form.map((m) => html`<p class="error">${m}</p>`)}</div>` : ''}
<form method="post" action="${action}" class="service-form" novalidate>${csrf(ctx)}
${options.modRevision ? html`<input type="hidden" name="modRevision" value="${options.modRevision}">` : ''}
<fieldset><legend>Service</legend>
${options.mode === 'create' ? input('name', html`required`) : html`<input type="hidden" name="name" value="${values.name}"><p><strong>${values.name}</strong></p>`}
${input('team', html`required`)}
${field('description', html`<textarea id="description" name="description" rows="2">${values.description}</textarea>`)}
${field('protocol', html`<select id="protocol" name="protocol">${protocols}</select>`)}
${input('port', html`inputmode="numeric"`)}
${field('mtls', html`<select id="mtls" name="mtls">${mtlsModes}</select>`)}
</fieldset>
<fieldset><legend>Dependencies</legend>
${field('dependencies', html`<textarea id="dependencies" name="dependencies" rows="3">${values.dependencies}</textarea>`)}
</fieldset>
<fieldset><legend>Traffic policy</legend>
${input('timeoutMs', html`inputmode="numeric"`)}
${input('retries', html`inputmode="numeric"`)}
</fieldset>
<fieldset><legend>Public exposure (optional)</legend>
${input('ingressHost')}${input('ingressPathPrefix')}${input('accessTeamDomain')}${input('accessAudience')}
</fieldset>
<button type="submit">Save</button></form>`,
  );
}

export function historyPage(ctx: PageContext, name: string, entries: HistoryEntry[], currentGeneration: number | undefined): string {
  // Entries are newest first; each is diffed against the one before it.
  const items = entries.map((entry, index) => {
    const previous = entries[index + 1];
    const diff = diffLines(previous?.spec ? canonicalJson(previous.spec) : '', entry.spec ? canonicalJson(entry.spec) : '');
    const lines = diff.map(
      (line) => html`<span class="${line.op}">${line.op === 'added' ? '+ ' : line.op === 'removed' ? '- ' : '  '}${line.text}</span>\n`,
    );
    const canRestore = entry.spec !== null && currentGeneration !== undefined && entry.generation !== currentGeneration;
    return html`<li class="entry" id="generation-${entry.generation}" data-generation="${entry.generation}"><h2>Generation ${entry.generation}: ${entry.action}${
      entry.restoredGeneration ? ` of generation ${entry.restoredGeneration}` : ''
    }</h2><p class="meta">by ${entry.actor} at ${entry.at}</p><pre class="diff">${lines}</pre>${
      canRestore
        ? html`<form method="post" action="${serviceUrl(name)}/rollback">${csrf(ctx)}<input type="hidden" name="generation" value="${entry.generation}"><button type="submit">Roll back to generation ${entry.generation}</button></form>`
        : ''
    }</li>`;
  });
  return layout(
    ctx,
    `History of ${name}`,
    html`<h1>History of <a href="${serviceUrl(name)}">${name}</a></h1><ol class="history">${items}</ol>`,
  );
}

export function topologyPage(ctx: PageContext, topology: Topology): string {
  const missing = topology.nodes.filter((n) => !n.registered);
  return layout(
    ctx,
    'Topology',
    html`<h1>Topology</h1><p>Arrows point from a caller to the service it calls. Dashed red boxes are dependencies nobody registered.</p>
<div class="topology-frame">${renderTopologySvg(topology, serviceUrl)}</div>
${
  missing.length
    ? html`<p class="missing">Missing: ${join(
        missing.map((n) => html`<span>${n.name}</span>`),
        ', ',
      )}</p>`
    : ''
}`,
  );
}

export function loginPage(ctx: PageContext, error?: string, next = '/ui/services'): string {
  return layout(
    ctx,
    'Sign in',
    html`<h1>Sign in</h1><p>Paste your team token (or the admin token). It is kept in an HttpOnly cookie for this browser.</p>
${error ? html`<p class="error" role="alert">${error}</p>` : ''}
<form method="post" action="/ui/login">${csrf(ctx)}<input type="hidden" name="next" value="${next}"><div class="field"><label for="token">Token</label><input id="token" name="token" type="password" autocomplete="off" required></div><button type="submit">Sign in</button></form>`,
  );
}

export function messagePage(ctx: PageContext, title: string, message: string): string {
  return layout(ctx, title, html`<h1>${title}</h1><p class="message">${message}</p><p><a href="/ui/services">Back to services</a></p>`);
}

export const STYLESHEET = `
body{font-family:system-ui,sans-serif;margin:0;color:#111;background:#fafafa}
header{display:flex;gap:1.5rem;align-items:center;padding:.6rem 1.2rem;background:#1d2b44;color:#fff}
header a{color:#fff;text-decoration:none;margin-right:.8rem}.brand{font-weight:bold}.session{margin-left:auto}
main{padding:1rem 1.5rem;max-width:72rem}
table{border-collapse:collapse;width:100%;background:#fff}th,td{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
.field{margin:.5rem 0}.field label{display:block;font-weight:600}.field input,.field textarea,.field select{width:28rem;max-width:100%;padding:.3rem}
.invalid input,.invalid textarea{border:2px solid #c0392b}.error{color:#c0392b;margin:.2rem 0}
fieldset{border:1px solid #ccc;margin:1rem 0;background:#fff}
.neighbours{display:flex;gap:2rem;align-items:center}.neighbours .self{padding:.5rem 1rem;border:2px solid #2a5bd7;border-radius:6px}
.missing{color:#c0392b}.nack{color:#c0392b}.empty{color:#666}
pre{background:#fff;border:1px solid #ddd;padding:.6rem;overflow:auto}
.diff .added{color:#1e7e34;background:#e6ffed}.diff .removed{color:#b31d28;background:#ffeef0}
.history{list-style:none;padding:0}.entry{margin-bottom:1.5rem}
.inline{display:inline}.danger button{background:#c0392b;color:#fff;border:0;padding:.4rem .8rem}
.topology-frame{overflow:auto;background:#fff;border:1px solid #ddd}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}
`;
