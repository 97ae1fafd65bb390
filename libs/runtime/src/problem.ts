// RFC 9457 problem details, the one error format of every Trellis HTTP API:
// `type` is https://trellis.dev/problems/<slug>, and `errors` names each field
// that was wrong.
import type { Response } from 'express';
import type { z } from 'zod';

export const PROBLEM_TYPE_BASE = 'https://trellis.dev/problems/';

export interface FieldError {
  /** Path into the request, e.g. `dependencies[0].service`, a query parameter, a header; `(body)` for the whole body. */
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

/** An error the HTTP layer turns into a problem response. */
export class ProblemError extends Error {
  constructor(
    readonly status: number,
    /** The last segment of the type URI: what kind of problem, stable for clients to branch on. */
    readonly slug: string,
    readonly title: string,
    detail?: string,
    readonly errors?: FieldError[],
    readonly extensions: Record<string, unknown> = {},
  ) {
    super(detail ?? title);
    this.name = 'ProblemError';
  }

  /** A problem about one field: `detail` and the field's message are the same sentence. */
  static field(status: number, slug: string, title: string, field: string, message: string): ProblemError {
    return new ProblemError(status, slug, title, message, [{ field, message }]);
  }

  toProblem(instance?: string): Problem {
    return {
      type: PROBLEM_TYPE_BASE + this.slug,
      title: this.title,
      status: this.status,
      ...(this.message !== this.title ? { detail: this.message } : {}),
      ...(instance ? { instance } : {}),
      ...(this.errors?.length ? { errors: this.errors } : {}),
      ...this.extensions,
    };
  }
}

/** Writes `problem` as `application/problem+json`; `instance` is usually the request path. */
export function sendProblem(res: Response, problem: ProblemError, instance?: string): void {
  res
    .status(problem.status)
    .type('application/problem+json')
    .send(JSON.stringify(problem.toProblem(instance)));
}

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
