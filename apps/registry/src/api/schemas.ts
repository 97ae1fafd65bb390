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

/** A registration always starts serving: draining is set through `/drain`, and registering again clears it. */
export const InstanceRegistration = InstanceRecord.omit({ service: true, registeredAt: true, drainingSince: true })
  .extend({
    /** Lease TTL: the instance disappears this long after its last heartbeat. */
    ttlSeconds: z.number().int().min(5).max(3600),
  })
  .strict();
export type InstanceRegistration = z.infer<typeof InstanceRegistration>;

export const InstanceResource = InstanceRecord.extend({ ttlSeconds: z.number().int().optional() });

export const RollbackRequest = z.object({ generation: z.number().int().min(1) }).strict();

export const DependentsConflict = z.object({ dependents: z.array(ServiceName) });

/** Body of `PUT /api/v1/hosts/{host}`: the team an admin assigns the ingress host to. */
export const HostAssignment = z.object({ team: TeamName }).strict();
