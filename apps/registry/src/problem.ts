// The registry's problems (RFC 9457, written by @trellis/runtime's sendProblem):
// every API error is one of these, naming the offending field when there is one.
import { ProblemError, type FieldError } from '@trellis/runtime';

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
