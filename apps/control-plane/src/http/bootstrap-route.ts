// GET /bootstrap/{service}: the Envoy bootstrap a VM or pod sidecar starts with.
// Query: node (node.id, default the literal "${NODE_ID}" for the start script to
// substitute), app_port (default the service's registered port), region/zone/
// sub_zone, admin_port, format=yaml|json. The ADS credential is the literal
// "${TRELLIS_XDS_TOKEN}" unless this control plane admits insecure clients.
import type { Request, Response } from 'express';
import { z } from 'zod';
import { ServiceName } from '@trellis/mesh-schema';
import { renderBootstrap, type BootstrapInput } from '../bootstrap';
import type { MeshModel } from '../model';
import { sendProblem } from './problem';

const Segment = z
  .string()
  .max(128)
  .regex(/^[a-zA-Z0-9._-]*$/, 'letters, digits, ".", "_" and "-" only');
const Query = z
  .object({
    node: z
      .string()
      .min(1)
      .max(256)
      .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
      .optional(),
    app_port: z.coerce.number().int().min(1).max(65535).optional(),
    admin_port: z.coerce.number().int().min(1).max(65535).optional(),
    region: Segment.optional(),
    zone: Segment.optional(),
    sub_zone: Segment.optional(),
    format: z.enum(['yaml', 'json']).default('yaml'),
  })
  .strict();

export function bootstrapHandler(deps: {
  model: () => MeshModel | undefined;
  xdsAddress: { host: string; port: number };
  requireToken: boolean;
}) {
  return (req: Request, res: Response): void => {
    const service = ServiceName.safeParse(req.params['service']);
    if (!service.success) return sendProblem(res, 400, 'Invalid service name', service.error.issues[0]!.message, { field: 'service' });
    const query = Query.safeParse(req.query);
    if (!query.success) {
      const issue = query.error.issues[0]!;
      const field = issue.path.join('.') || String((issue as { keys?: string[] }).keys?.[0] ?? 'query');
      return sendProblem(res, 400, 'Invalid query', `${field}: ${issue.message}`, { field });
    }
    const model = deps.model();
    if (!model) return sendProblem(res, 503, 'Not ready', 'the mesh snapshot is not loaded yet');
    const known = model.services.get(service.data);
    if (!known) return sendProblem(res, 404, 'Unknown service', `service "${service.data}" is not registered`, { field: 'service' });
    const q = query.data;
    const input: BootstrapInput = {
      service: known.name,
      nodeId: q.node ?? '${NODE_ID}',
      appPort: q.app_port ?? known.port,
      appProtocol: known.protocol,
      xds: deps.xdsAddress,
      locality: { region: q.region ?? '', zone: q.zone ?? '', subZone: q.sub_zone ?? '' },
      ...(deps.requireToken ? { xdsToken: '${TRELLIS_XDS_TOKEN}' } : {}),
      ...(q.admin_port ? { adminPort: q.admin_port } : {}),
    };
    res.type(q.format === 'json' ? 'application/json' : 'application/yaml').send(renderBootstrap(input, q.format));
  };
}
