// The OpenAPI 3.1 document of /api/v1, generated from the same zod schemas the
// handlers validate with, so the document cannot drift from the behaviour.
import { extendZodWithOpenApi, OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import {
  HistoryEntry,
  HostClaim,
  IngressHost,
  InstanceId,
  InstanceRecord,
  ProxyStatus,
  ServiceName,
  ServiceSpec,
} from '@trellis/mesh-schema';
import { z } from 'zod';
import {
  HostAssignment,
  InstanceRegistration,
  InstanceResource,
  RollbackRequest,
  ServiceList,
  ServiceListQuery,
  ServiceResource,
} from './api/schemas';

// Registering schemas needs zod to know `.openapi()`; idempotent.
extendZodWithOpenApi(z);

const ProblemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string().optional(),
  instance: z.string().optional(),
  errors: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
  dependents: z.array(z.string()).optional(),
  currentETag: z.string().optional(),
  host: z.string().optional(),
  owner: z.string().optional(),
});

const TopologySchema = z.object({
  nodes: z.array(
    z.object({
      name: z.string(),
      team: z.string().optional(),
      protocol: z.string().optional(),
      registered: z.boolean(),
      instances: z.number().int(),
    }),
  ),
  edges: z.array(
    z.object({
      from: z.string(),
      to: z.string(),
      admitted: z
        .boolean()
        .openapi({ description: 'whether the mesh admits this call now: both services registered and `from` declared `to`' }),
    }),
  ),
});

export function buildOpenApiDocument(): ReturnType<OpenApiGeneratorV31['generateDocument']> {
  const registry = new OpenAPIRegistry();
  const bearer = registry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'A team JWT (claim `team`) verified against the configured JWKS, or the admin token.',
  });
  const serviceCredential = registry.registerComponent('securitySchemes', 'serviceCredential', {
    type: 'http',
    scheme: 'basic',
    description: "An instance agent's service credential, `service:secret` (TRELLIS_SERVICE_CREDENTIALS): that service's instances only.",
  });
  const security = [{ [bearer.name]: [] }];
  const instanceSecurity = [{ [bearer.name]: [] }, { [serviceCredential.name]: [] }];
  // `{}`: anonymous reads are allowed unless the registry runs with TRELLIS_READS_REQUIRE_AUTH=true.
  const readSecurity = [{}, { [bearer.name]: [] }];

  // `.meta()` clones: the record schemas were built before zod was extended, their clones know `.openapi()`.
  const spec = registry.register(
    'ServiceSpec',
    ServiceSpec.meta({ description: 'A service definition: the body of PUT /api/v1/services/{name}.' }),
  );
  const service = registry.register('Service', ServiceResource.meta({ description: 'A stored service; modRevision is its ETag.' }));
  const instance = registry.register('Instance', InstanceRecord.meta({ description: 'A live instance, bound to an etcd lease.' }));
  const history = registry.register(
    'HistoryEntry',
    HistoryEntry.meta({ description: 'One change to a service: who, when, and the definition after it.' }),
  );
  const proxy = registry.register(
    'ProxyStatus',
    ProxyStatus.meta({ description: 'xDS status of one proxy, written by the control plane.' }),
  );
  const problem = registry.register(
    'Problem',
    ProblemSchema.meta({ description: 'RFC 9457 problem details; errors names each bad field.' }),
  );

  const problemResponse = (description: string) => ({ description, content: { 'application/problem+json': { schema: problem } } });
  const json = <T extends z.ZodType>(schema: T, description: string) => ({ description, content: { 'application/json': { schema } } });
  const etag = z.object({ ETag: z.string().describe('the service revision, to send back in If-Match') });
  const ifMatch = z.object({ 'If-Match': z.string().optional().describe('ETag of the revision this change is based on') });
  const nameParams = z.object({ name: ServiceName });
  const instanceParams = z.object({ name: ServiceName, id: InstanceId });
  const errors = {
    400: problemResponse('invalid request; `errors` names each bad field'),
    401: problemResponse('no valid bearer token'),
    403: problemResponse("the token's team does not own the service"),
    404: problemResponse('not found'),
    413: problemResponse('body too large'),
    415: problemResponse('body is not application/json'),
    503: problemResponse('etcd unavailable'),
  };

  registry.registerPath({
    method: 'get',
    path: '/api/v1/services',
    operationId: 'listServices',
    security: readSecurity,
    summary: 'List services',
    request: { query: ServiceListQuery },
    responses: { 200: json(ServiceList, 'services, sorted by name'), 400: errors[400] },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/v1/services',
    operationId: 'createService',
    summary: 'Register a service',
    security,
    request: { body: { required: true, content: { 'application/json': { schema: spec } } } },
    responses: { 201: { ...json(service, 'created'), headers: etag }, 409: problemResponse('already exists'), ...errors },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/v1/services/{name}',
    operationId: 'getService',
    security: readSecurity,
    summary: 'Get a service',
    request: { params: nameParams },
    responses: { 200: { ...json(service, 'the service'), headers: etag }, 404: errors[404] },
  });
  registry.registerPath({
    method: 'put',
    path: '/api/v1/services/{name}',
    operationId: 'putService',
    summary: 'Create or replace a service',
    description:
      'Creates the service when absent. Replacing requires If-Match with the current ETag: 428 without it, 412 when it is stale.',
    security,
    request: { params: nameParams, headers: ifMatch, body: { required: true, content: { 'application/json': { schema: spec } } } },
    responses: {
      200: { ...json(service, 'replaced'), headers: etag },
      201: { ...json(service, 'created'), headers: etag },
      409: problemResponse('the ingress host belongs to another team; `owner` names it'),
      412: problemResponse('If-Match is stale: someone else changed the service'),
      428: problemResponse('If-Match is required to replace'),
      ...errors,
    },
  });
  registry.registerPath({
    method: 'delete',
    path: '/api/v1/services/{name}',
    operationId: 'deleteService',
    summary: 'Delete a service',
    description: 'Refused with 409 while other services depend on it; `dependents` names them.',
    security,
    request: { params: nameParams, headers: ifMatch },
    responses: {
      204: { description: 'deleted' },
      409: problemResponse('still depended on'),
      412: problemResponse('stale If-Match'),
      ...errors,
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/v1/services/{name}/history',
    operationId: 'listServiceHistory',
    security: readSecurity,
    summary: 'Every change to a service, newest first',
    request: { params: nameParams },
    responses: { 200: json(z.object({ items: z.array(history) }), 'history'), 404: errors[404] },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/v1/services/{name}/history/{generation}',
    operationId: 'getServiceGeneration',
    security: readSecurity,
    summary: 'One generation of a service',
    request: { params: z.object({ name: ServiceName, generation: z.coerce.number().int().min(1) }) },
    responses: { 200: json(history, 'the history entry'), 400: errors[400], 404: errors[404] },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/v1/services/{name}/rollback',
    operationId: 'rollbackService',
    summary: 'Restore the definition of a previous generation',
    security,
    request: {
      params: nameParams,
      headers: ifMatch,
      body: { required: true, content: { 'application/json': { schema: RollbackRequest } } },
    },
    responses: {
      200: { ...json(service, 'restored as a new generation'), headers: etag },
      412: problemResponse('stale If-Match'),
      ...errors,
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/v1/services/{name}/proxies',
    operationId: 'listServiceProxies',
    security: readSecurity,
    summary: "xDS status of the service's proxies, as the control plane records it",
    request: { params: nameParams },
    responses: { 200: json(z.object({ items: z.array(proxy) }), 'proxy statuses') },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/v1/services/{name}/instances',
    operationId: 'listInstances',
    security: readSecurity,
    summary: 'Live instances of a service',
    request: { params: nameParams },
    responses: { 200: json(z.object({ items: z.array(instance) }), 'instances') },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/v1/services/{name}/instances',
    operationId: 'registerInstance',
    summary: 'Register an instance with a lease TTL',
    description:
      "The instance disappears `ttlSeconds` after its last heartbeat. Needs the service's own credential, the owning team's token or the admin token.",
    security: instanceSecurity,
    request: { params: nameParams, body: { required: true, content: { 'application/json': { schema: InstanceRegistration } } } },
    responses: { 201: json(InstanceResource, 'registered'), ...errors },
  });
  registry.registerPath({
    method: 'put',
    path: '/api/v1/services/{name}/instances/{id}/heartbeat',
    operationId: 'heartbeatInstance',
    summary: 'Keep an instance alive (refreshes its lease)',
    security: instanceSecurity,
    request: { params: instanceParams },
    responses: { 204: { description: 'lease refreshed' }, ...errors },
  });
  registry.registerPath({
    method: 'put',
    path: '/api/v1/services/{name}/instances/{id}/drain',
    operationId: 'drainInstance',
    summary: 'Drain an instance: it keeps its lease and its calls in flight, but proxies send it no new calls',
    description: 'Idempotent; registering the instance again serves it again.',
    security: instanceSecurity,
    request: { params: instanceParams },
    responses: { 200: json(instance, 'draining'), ...errors },
  });
  registry.registerPath({
    method: 'delete',
    path: '/api/v1/services/{name}/instances/{id}',
    operationId: 'deregisterInstance',
    summary: 'Deregister an instance',
    security: instanceSecurity,
    request: { params: instanceParams },
    responses: { 204: { description: 'deregistered' }, ...errors },
  });
  const hostClaim = registry.register('HostClaim', HostClaim.meta({ description: 'The team that owns an ingress host.' }));
  registry.registerPath({
    method: 'get',
    path: '/api/v1/hosts',
    operationId: 'listHosts',
    security: readSecurity,
    summary: 'Ingress hosts and the team that owns each',
    responses: { 200: json(z.object({ items: z.array(hostClaim) }), 'host claims') },
  });
  registry.registerPath({
    method: 'put',
    path: '/api/v1/hosts/{host}',
    operationId: 'assignHost',
    summary: 'Assign an ingress host to a team (admin only)',
    description:
      "The first service that declares an ingress host fixes its owning team; another team's service with that host gets 409 until an admin assigns the host to it.",
    security,
    request: {
      params: z.object({ host: IngressHost }),
      body: { required: true, content: { 'application/json': { schema: HostAssignment } } },
    },
    responses: { 200: json(hostClaim, 'assigned'), ...errors },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/v1/topology',
    operationId: 'getTopology',
    security: readSecurity,
    summary: 'Who calls whom: services as nodes (unregistered dependencies marked), dependencies as edges',
    responses: { 200: json(TopologySchema, 'the topology') },
  });

  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'Trellis registry',
      version: '1.0.0',
      description: 'Declare services, what they call, and their instances. Errors are application/problem+json (RFC 9457).',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: '/' }],
  });
}
