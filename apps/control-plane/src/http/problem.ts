// The control plane's HTTP problems (RFC 9457, written by @trellis/runtime's sendProblem).
import { ProblemError } from '@trellis/runtime';

export const problems = {
  invalidParameter: (field: string, message: string) => ProblemError.field(400, 'invalid-parameter', 'Invalid parameter', field, message),
  notReady: () => new ProblemError(503, 'not-ready', 'Not ready', 'the mesh snapshot is not loaded yet'),
  proxyNotConnected: (node: string) =>
    ProblemError.field(404, 'proxy-not-connected', 'Proxy not connected', 'node', `no xDS stream from node "${node}" on this replica`),
  unknownService: (service: string) =>
    ProblemError.field(404, 'unknown-service', 'Unknown service', 'service', `service "${service}" is not registered`),
  unauthorized: (detail: string) => new ProblemError(401, 'unauthorized', 'Unauthorized', detail),
  notFound: () => new ProblemError(404, 'not-found', 'Not found', 'no such endpoint'),
};
