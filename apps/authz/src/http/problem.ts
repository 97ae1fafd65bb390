// authz's HTTP problems (RFC 9457, written by @trellis/runtime's sendProblem with
// the one type-URI scheme of every Trellis API); `errors` names the field.
import { ProblemError } from '@trellis/runtime';

export const problems = {
  invalid: (field: string, message: string) => ProblemError.field(400, 'validation', 'Invalid request', field, message),
  malformedBody: (message: string) => ProblemError.field(400, 'malformed-body', 'Bad request', '(body)', message),
  unauthenticated: (detail = 'send Authorization: Basic base64(service:secret)') =>
    ProblemError.field(401, 'unauthenticated', 'Unauthenticated', 'Authorization', detail),
  certificateRequired: () =>
    ProblemError.field(
      401,
      'certificate-required',
      'Workload certificate required',
      '(client certificate)',
      "present this service's workload certificate (mTLS) on authz's mTLS port (TRELLIS_MTLS_PORT); the service credential only buys a certificate (POST /v1/certificate)",
    ),
  forbidden: (detail: string) => new ProblemError(403, 'forbidden', 'Forbidden', detail),
  undeclared: (caller: string, audience: string, reason: string) =>
    new ProblemError(
      403,
      'forbidden',
      'Forbidden',
      `${caller} has not declared a dependency on ${audience}`,
      [{ field: 'audience', message: `not a declared dependency of ${caller}` }],
      { reason },
    ),
  tokenEndpointDisabled: () =>
    new ProblemError(
      404,
      'token-endpoint-disabled',
      'Token endpoint disabled',
      'no caller credentials are configured (TRELLIS_TOKEN_ENDPOINT_CREDENTIALS)',
    ),
  caDisabled: () =>
    new ProblemError(404, 'ca-disabled', 'CA disabled', 'no mesh CA is configured (TRELLIS_CA_CERT_FILE / TRELLIS_CA_KEY_FILE)'),
  notFound: (method: string, path: string) => new ProblemError(404, 'not-found', 'Not found', `${method} ${path} does not exist`),
  notReady: () => new ProblemError(503, 'not-ready', 'Not ready', 'the registry snapshot is not loaded yet'),
  unavailable: (what: 'token' | 'certificate') => new ProblemError(503, 'unavailable', 'Unavailable', `no ${what} can be issued right now`),
  internal: () => new ProblemError(500, 'internal', 'Internal error', 'unexpected error'),
};
