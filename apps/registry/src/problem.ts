// RFC 9457 problem details: every API error leaves through here, naming the
// offending field when there is one.
import type { Response } from 'express';
import type { z } from 'zod';

export interface FieldError {
  /** Path into the request, e.g. `dependencies[0].service`; `(body)` for the whole body. */
  field: string;
  message: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  errors?: FieldError[];
  [extension: string]: unknown;
}

const TYPE_BASE = 'https://trellis.dev/problems/';

/** An error the HTTP layer turns into a problem response. */
export class ProblemError extends Error {
  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    detail?: string,
    readonly errors?: FieldError[],
    readonly extensions: Record<string, unknown> = {},
  ) {
    super(detail ?? title);
    this.name = 'ProblemError';
  }

  toProblem(instance?: string): Problem {
    return {
      type: TYPE_BASE + this.slug,
      title: this.title,
      status: this.status,
      ...(this.message !== this.title ? { detail: this.message } : {}),
      ...(instance ? { instance } : {}),
      ...(this.errors?.length ? { errors: this.errors } : {}),
      ...this.extensions,
    };
  }
}

export const problems = {
  validation: (errors: FieldError[], detail = 'the request is not valid') =>
    new ProblemError(400, 'validation', 'Invalid request', detail, errors),
  malformedJson: (detail: string) =>
    new ProblemError(400, 'malformed-json', 'Malformed JSON body', detail, [{ field: '(body)', message: detail }]),
  unauthenticated: (detail: string) => new ProblemError(401, 'unauthenticated', 'Authentication required', detail),
  forbidden: (detail: string) => new ProblemError(403, 'forbidden', 'Not allowed', detail),
  notFound: (detail: string) => new ProblemError(404, 'not-found', 'Not found', detail),
  methodNotAllowed: (method: string, allowed: ReadonlyArray<string>) =>
    new ProblemError(
      405,
      'method-not-allowed',
      'Method not allowed',
      `${method} is not allowed here; use ${allowed.join(', ')}`,
      undefined,
      { allow: allowed },
    ),
  conflict: (detail: string, extensions: Record<string, unknown> = {}) =>
    new ProblemError(409, 'conflict', 'Conflict', detail, undefined, extensions),
  preconditionFailed: (detail: string, extensions: Record<string, unknown> = {}) =>
    new ProblemError(412, 'precondition-failed', 'Precondition failed', detail, [{ field: 'If-Match', message: detail }], extensions),
  tooLarge: (limit: number) =>
    new ProblemError(413, 'too-large', 'Request body too large', `the body exceeds ${limit} bytes`, [
      { field: '(body)', message: `must be at most ${limit} bytes` },
    ]),
  unsupportedMediaType: (detail: string) =>
    new ProblemError(415, 'unsupported-media-type', 'Unsupported media type', detail, [{ field: 'Content-Type', message: detail }]),
  preconditionRequired: (detail: string) =>
    new ProblemError(428, 'precondition-required', 'Precondition required', detail, [{ field: 'If-Match', message: detail }]),
  unavailable: (detail: string) => new ProblemError(503, 'unavailable', 'Service unavailable', detail),
  internal: () => new ProblemError(500, 'internal', 'Internal error', 'the registry failed to handle the request; see its logs'),
};

/** `['dependencies', 0, 'service']` → `dependencies[0].service`. */
export function fieldPath(path: ReadonlyArray<PropertyKey>, root = ''): string {
  let out = root;
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || '(body)';
}

/** One field error per zod issue; unknown keys get one error each so the field is named. */
export function zodFieldErrors(error: z.ZodError, root = ''): FieldError[] {
  const out: FieldError[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ field: fieldPath([...issue.path, key], root), message: 'unknown field' });
    } else {
      out.push({ field: fieldPath(issue.path, root), message: issue.message });
    }
  }
  return out;
}

export function sendProblem(res: Response, problem: Problem): void {
  res.status(problem.status).type('application/problem+json').send(JSON.stringify(problem));
}
