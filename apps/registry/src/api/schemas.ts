// Request and response shapes of the REST API that are not records themselves.
// The records (ServiceSpec, InstanceRecord, …) come from @trellis/mesh-schema.
import { InstanceRecord, Protocol, ServiceName, ServiceRecord, TeamName } from '@trellis/mesh-schema';
import { z } from 'zod';

export const ServiceListQuery = z
  .object({
    team: TeamName.optional(),
    protocol: Protocol.optional(),
    /** Substring of the name or description. */
    q: z.string().max(128).optional(),
    /** Only services that call this one. */
    dependsOn: ServiceName.optional(),
  })
  .strict();
export type ServiceListQuery = z.infer<typeof ServiceListQuery>;

/** A stored service as the API returns it; `modRevision` is also the ETag. */
export const ServiceResource = ServiceRecord.extend({ modRevision: z.string() });

export const ServiceList = z.object({ items: z.array(ServiceResource), revision: z.string().optional() });

/** A registration's body; the route parses it with CheckedInstanceRegistration, so the store checks it no more. */
export { InstanceRegistration } from '@trellis/mesh-schema';

export const InstanceResource = InstanceRecord.extend({ ttlSeconds: z.number().int().optional() });

export const RollbackRequest = z.object({ generation: z.number().int().min(1) }).strict();

export const DependentsConflict = z.object({ dependents: z.array(ServiceName) });

/** Body of `PUT /api/v1/hosts/{host}`: the team an admin assigns the ingress host to. */
export const HostAssignment = z.object({ team: TeamName }).strict();
