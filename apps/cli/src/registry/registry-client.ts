// The registry's REST API through a client generated from its OpenAPI document
// (`nx run cli:generate`): paths, parameters and bodies are checked by the compiler,
// never written by hand here.
import createClient, { type Client } from 'openapi-fetch';
import type { components, paths } from '../generated/registry-api';

export type RegistryClient = Client<paths>;
export type Service = components['schemas']['Service'];
export type ServiceSpec = components['schemas']['ServiceSpec'];
export type Instance = components['schemas']['Instance'];
export type HistoryEntry = components['schemas']['HistoryEntry'];
export type ProxyStatus = components['schemas']['ProxyStatus'];
export type Problem = components['schemas']['Problem'];
export type HostClaim = components['schemas']['HostClaim'];

export interface RegistryClientOptions {
  baseUrl: string;
  /** The whole Authorization header value: `Bearer …` or `Basic …`. */
  authorization?: string;
  /** Per-request time limit. */
  timeoutMs?: number;
}

export function createRegistryClient(options: RegistryClientOptions): RegistryClient {
  const timeoutMs = options.timeoutMs ?? 10_000;
  return createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ''),
    headers: options.authorization ? { authorization: options.authorization } : {},
    fetch: (request) => fetch(request, { signal: AbortSignal.timeout(timeoutMs) }),
  });
}

/** A registry answer that is not a success, with its problem details when it sent them. */
export class RegistryError extends Error {
  constructor(
    readonly status: number,
    readonly what: string,
    readonly problem?: Partial<Problem>,
  ) {
    super(`${what}: ${status} ${problem?.title ?? ''}${problem?.detail ? `: ${problem.detail}` : ''}${fieldErrors(problem)}`.trim());
    this.name = 'RegistryError';
  }

  /** 5xx and 429: worth retrying; 4xx other than these will not change by retrying. */
  get transient(): boolean {
    return this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

function fieldErrors(problem: Partial<Problem> | undefined): string {
  if (!problem?.errors?.length) return '';
  return '\n' + problem.errors.map((e) => `  ${e.field}: ${e.message}`).join('\n');
}

/** The `data` of an openapi-fetch result, or a RegistryError built from its problem. */
export function ok<T>(result: { data?: T; error?: unknown; response: Response }, what: string): T {
  if (result.response.ok) return result.data as T;
  const problem = typeof result.error === 'object' && result.error !== null ? (result.error as Partial<Problem>) : undefined;
  throw new RegistryError(result.response.status, what, problem);
}
