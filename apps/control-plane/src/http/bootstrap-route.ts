// GET /bootstrap/{service}: the Envoy bootstrap a VM or pod sidecar starts with.
// Query: node (node.id, default the literal "${NODE_ID}" for the start script to
// substitute), app_port (required: where the application listens on 127.0.0.1 —
// never the service port, which the sidecar's inbound listener takes), region/zone/
// sub_zone, admin_port and outbound_port (per sidecar, so two on one VM do not
// collide; default the mesh-wide ports), ready_port (GET /ready there answers once
// Envoy is LIVE, for a startup probe), format=yaml|json, and where this control plane serves xDS
// over TLS: ca_file (and with client certificates cert_file, key_file — paths on the
// sidecar's host — or, without them, the workload certificate over path-based SDS).
// The ADS credential is then the client certificate; otherwise it is
// the literal "${TRELLIS_XDS_TOKEN}" unless this control plane admits insecure clients.
import type { Request, Response } from 'express';
import { z } from 'zod';
import { ServiceName } from '@trellis/mesh-schema';
import { sendProblem } from '@trellis/runtime';
import { bootstrapPortCollision, renderBootstrap, type BootstrapInput } from '../bootstrap';
import type { MeshModel } from '../model';
import { problems } from './problem';

const Segment = z
  .string()
  .max(128)
  .regex(/^[a-zA-Z0-9._-]*$/, 'letters, digits, ".", "_" and "-" only');
const HostPath = z
  .string()
  .max(1024)
  .regex(/^\/[\x21-\x7e]*$/, 'an absolute path of printable ASCII without spaces');
const Query = z
  .object({
    node: z
      .string()
      .min(1)
      .max(256)
      .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
      .optional(),
    app_port: z.coerce.number().int().min(1).max(65535),
    admin_port: z.coerce.number().int().min(1).max(65535).optional(),
    outbound_port: z.coerce.number().int().min(1).max(65535).optional(),
    ready_port: z.coerce.number().int().min(1).max(65535).optional(),
    region: Segment.optional(),
    zone: Segment.optional(),
    sub_zone: Segment.optional(),
    format: z.enum(['yaml', 'json']).default('yaml'),
    ca_file: HostPath.default('/etc/trellis/xds/ca.crt'),
    cert_file: HostPath.optional(),
    key_file: HostPath.optional(),
    server_name: z
      .string()
      .max(253)
      .regex(/^[a-zA-Z0-9.-]+$/, 'a DNS name')
      .optional(),
  })
  .strict();

/** How sidecars reach this control plane's xDS port. */
export type XdsTransport = { tls: false; requireToken: boolean } | { tls: true; clientCertificates: boolean; requireToken: boolean };

export function bootstrapHandler(deps: {
  model: () => MeshModel | undefined;
  xdsAddresses: ReadonlyArray<{ host: string; port: number }>;
  transport: XdsTransport;
}) {
  return (req: Request, res: Response): void => {
    const service = ServiceName.safeParse(req.params['service']);
    if (!service.success) return sendProblem(res, problems.invalidParameter('service', service.error.issues[0]!.message));
    const query = Query.safeParse(req.query);
    if (!query.success) {
      const issue = query.error.issues[0]!;
      const field = issue.path.join('.') || String((issue as { keys?: string[] }).keys?.[0] ?? 'query');
      return sendProblem(res, problems.invalidParameter(field, `${field}: ${issue.message}`));
    }
    const model = deps.model();
    if (!model) return sendProblem(res, problems.notReady());
    const known = model.services.get(service.data);
    if (!known) return sendProblem(res, problems.unknownService(service.data));
    const q = query.data;
    // app_port and admin_port must not meet a port the sidecar binds (inbound, outbound, admin, TCP dependencies).
    const collision = bootstrapPortCollision(model, known, {
      appPort: q.app_port,
      ...(q.admin_port ? { adminPort: q.admin_port } : {}),
      ...(q.outbound_port ? { outboundPort: q.outbound_port } : {}),
      ...(q.ready_port ? { readyPort: q.ready_port } : {}),
    });
    if (collision) return sendProblem(res, problems.invalidParameter(collision.field, collision.detail));
    if ((q.cert_file === undefined) !== (q.key_file === undefined)) {
      const missing = q.cert_file === undefined ? 'cert_file' : 'key_file';
      return sendProblem(res, problems.invalidParameter(missing, `${missing}: cert_file and key_file go together`));
    }
    const { transport } = deps;
    // Without files of its own, the sidecar proves its service to xDS with its workload certificate (kept renewed by the agent).
    const clientCertificate = q.cert_file && q.key_file ? { certFile: q.cert_file, keyFile: q.key_file } : { workloadCertificate: true };
    const input: BootstrapInput = {
      service: known.name,
      nodeId: q.node ?? '${NODE_ID}',
      appPort: q.app_port,
      appProtocol: known.protocol,
      xds: deps.xdsAddresses,
      locality: { region: q.region ?? '', zone: q.zone ?? '', subZone: q.sub_zone ?? '' },
      ...(transport.requireToken ? { xdsToken: '${TRELLIS_XDS_TOKEN}' } : {}),
      ...(transport.tls
        ? {
            xdsTls: {
              caFile: q.ca_file,
              ...(transport.clientCertificates ? clientCertificate : {}),
              ...(q.server_name ? { serverName: q.server_name } : {}),
            },
          }
        : {}),
      ...(q.admin_port ? { adminPort: q.admin_port } : {}),
      ...(q.outbound_port ? { outboundPort: q.outbound_port } : {}),
      ...(q.ready_port ? { readyPort: q.ready_port } : {}),
    };
    res.type(q.format === 'json' ? 'application/json' : 'application/yaml').send(renderBootstrap(input, q.format));
  };
}
