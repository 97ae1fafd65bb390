// The web form's fields and the ServiceSpec they stand for. The form covers
// what an application engineer sets by hand; advanced settings made through
// the API (circuit breakers, traffic split, per-dependency policy, …) are
// carried over untouched when the form saves.
import { ServiceSpec } from '@trellis/mesh-schema';
import type { Dependency } from '@trellis/mesh-schema';
import type { FieldError } from '@trellis/runtime';
import { zodFieldErrors } from '@trellis/runtime';

export const FORM_FIELDS = [
  'name',
  'team',
  'description',
  'protocol',
  'port',
  'mtls',
  'dependencies',
  'timeoutMs',
  'retries',
  'ingressHost',
  'ingressPathPrefix',
  'accessTeamDomain',
  'accessAudience',
] as const;
export type FormField = (typeof FORM_FIELDS)[number];

export type FormValues = Record<FormField, string>;

/** Errors keyed by form field; `_form` holds errors that belong to no single field. */
export type FormErrors = Partial<Record<FormField | '_form', string[]>>;

export type FormResult = { ok: true; spec: ServiceSpec } | { ok: false; errors: FormErrors };

export function emptyForm(): FormValues {
  const defaults: Partial<FormValues> = { protocol: 'http', mtls: 'off', ingressPathPrefix: '/' };
  return Object.fromEntries(FORM_FIELDS.map((f) => [f, defaults[f] ?? ''])) as FormValues;
}

/** Reads the known fields from a urlencoded body; anything else is ignored. */
export function readForm(body: unknown): FormValues {
  const values = emptyForm();
  if (body && typeof body === 'object') {
    for (const field of FORM_FIELDS) {
      if (!Object.hasOwn(body, field)) continue;
      const raw = (body as Record<string, unknown>)[field];
      if (typeof raw === 'string') values[field] = raw;
    }
  }
  return values;
}

export function specToForm(spec: ServiceSpec): FormValues {
  return {
    name: spec.name,
    team: spec.team,
    description: spec.description,
    protocol: spec.protocol,
    port: String(spec.port),
    mtls: spec.mtls ?? 'off',
    dependencies: spec.dependencies.map((d) => d.service).join('\n'),
    timeoutMs: spec.policy.timeoutMs !== undefined ? String(spec.policy.timeoutMs) : '',
    retries: spec.policy.retries ? String(spec.policy.retries.attempts) : '',
    ingressHost: spec.ingress?.host ?? '',
    ingressPathPrefix: spec.ingress?.pathPrefix ?? '/',
    accessTeamDomain: spec.ingress?.cloudflareAccess?.teamDomain ?? '',
    accessAudience: spec.ingress?.cloudflareAccess?.audience ?? '',
  };
}

/**
 * Pure: turns form values into a validated spec. `existing` is the stored
 * definition when editing; its settings the form does not show are kept.
 */
export function formToSpec(values: FormValues, existing?: ServiceSpec): FormResult {
  const errors: FormErrors = {};
  const number = (field: FormField): number | undefined => {
    const text = values[field].trim();
    if (text === '') return undefined;
    if (!/^\d{1,9}$/.test(text)) {
      addError(errors, field, 'must be a whole number');
      return undefined;
    }
    return Number(text);
  };

  const port = number('port');
  const timeoutMs = number('timeoutMs');
  const attempts = number('retries');
  const dependencyNames = values.dependencies
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
  const previousDeps = new Map((existing?.dependencies ?? []).map((d) => [d.service, d]));
  const dependencies: Dependency[] = dependencyNames.map((service) => previousDeps.get(service) ?? { service });

  const { timeoutMs: _oldTimeout, retries: oldRetries, ...otherPolicy } = existing?.policy ?? {};
  const policy = {
    ...otherPolicy,
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(attempts !== undefined ? { retries: { ...(oldRetries ?? {}), attempts } } : {}),
  };

  const host = values.ingressHost.trim();
  const audience = values.accessAudience.trim();
  const teamDomain = values.accessTeamDomain.trim();
  const ingress = host
    ? {
        host,
        pathPrefix: values.ingressPathPrefix.trim() || '/',
        ...(audience || teamDomain ? { cloudflareAccess: { teamDomain, audience } } : {}),
      }
    : undefined;
  if (!host && (audience || teamDomain)) addError(errors, 'ingressHost', 'a public host is required when Cloudflare Access is set');
  if (values.port.trim() === '') addError(errors, 'port', 'is required');

  const input = {
    name: values.name.trim(),
    team: values.team.trim(),
    description: values.description.trim(),
    protocol: values.protocol,
    port: port ?? 0,
    dependencies,
    policy,
    ...(existing?.trafficSplit ? { trafficSplit: existing.trafficSplit } : {}),
    ...(ingress ? { ingress } : {}),
    // Absent means off; written only once a mode was chosen, so saving an untouched form changes nothing.
    ...(values.mtls !== 'off' || existing?.mtls ? { mtls: values.mtls } : {}),
    ...(existing?.workloadIdentity ? { workloadIdentity: existing.workloadIdentity } : {}),
  };
  const parsed = ServiceSpec.safeParse(input);
  if (!parsed.success) {
    for (const error of zodFieldErrors(parsed.error)) {
      const field = formFieldOf(error.field);
      // The form already explained a missing or non-numeric port.
      if (field === 'port' && errors.port) continue;
      addError(errors, field, error.message);
    }
  }
  if (Object.keys(errors).length > 0 || !parsed.success) return { ok: false, errors };
  return { ok: true, spec: parsed.data };
}

/** Which form field an API field path belongs to. */
export function formFieldOf(path: string): FormField | '_form' {
  if (path.startsWith('dependencies')) return 'dependencies';
  if (path === 'policy.timeoutMs') return 'timeoutMs';
  if (path.startsWith('policy.retries')) return 'retries';
  if (path === 'ingress.host') return 'ingressHost';
  if (path === 'ingress.pathPrefix') return 'ingressPathPrefix';
  if (path === 'ingress.cloudflareAccess.teamDomain') return 'accessTeamDomain';
  if (path === 'ingress.cloudflareAccess.audience') return 'accessAudience';
  return (FORM_FIELDS as ReadonlyArray<string>).includes(path) ? (path as FormField) : '_form';
}

/** Problem field errors (from the API layer) as form errors. */
export function problemToFormErrors(fieldErrors: ReadonlyArray<FieldError>, fallback: string): FormErrors {
  const errors: FormErrors = {};
  if (fieldErrors.length === 0) addError(errors, '_form', fallback);
  for (const error of fieldErrors) addError(errors, formFieldOf(error.field), error.message);
  return errors;
}

function addError(errors: FormErrors, field: FormField | '_form', message: string): void {
  (errors[field] ??= []).push(message);
}
