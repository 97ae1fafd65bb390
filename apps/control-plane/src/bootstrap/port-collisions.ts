// Ports a sidecar binds, and which of them an app_port, admin_port or outbound_port
// would take. Envoy refuses to start (or a listener fails to bind) when two of them
// meet, so /bootstrap/{service} refuses the request naming the field instead.
import type { MeshModel, ServiceModel } from '../model';

export type BootstrapPortField = 'app_port' | 'admin_port' | 'outbound_port' | 'ready_port';

export interface PortCollision {
  field: BootstrapPortField;
  detail: string;
}

/** The ports a bootstrap request chooses; admin and outbound default to the mesh-wide settings. */
export interface BootstrapPorts {
  appPort: number;
  adminPort?: number;
  outboundPort?: number;
  readyPort?: number;
}

/** The first collision among the chosen ports and the ports the sidecar binds for the mesh, or undefined. */
export function bootstrapPortCollision(model: MeshModel, service: ServiceModel, ports: BootstrapPorts): PortCollision | undefined {
  const outbound = { port: ports.outboundPort ?? model.settings.outboundPort, what: 'the outbound listener' };
  const admin = { port: ports.adminPort ?? model.settings.adminPort, what: "Envoy's admin interface" };
  const fixed: Array<{ port: number; what: string }> = [];
  if (service.inbound) fixed.push({ port: service.port, what: "the inbound listener (the service's port)" });
  for (const dep of service.dependencies) {
    const callee = model.services.get(dep.service);
    if (callee?.protocol === 'tcp') fixed.push({ port: callee.port, what: `the listener of TCP dependency "${callee.name}"` });
  }
  // Each port the request gives, against everything else the sidecar binds; the app's port last.
  const checks: Array<{ field: BootstrapPortField; port: number | undefined; against: Array<{ port: number; what: string }> }> = [
    { field: 'outbound_port', port: ports.outboundPort, against: [...fixed, admin] },
    { field: 'admin_port', port: ports.adminPort, against: [...fixed, outbound] },
    { field: 'ready_port', port: ports.readyPort, against: [...fixed, outbound, admin] },
    {
      field: 'app_port',
      port: ports.appPort,
      against: [...fixed, outbound, admin, ...(ports.readyPort ? [{ port: ports.readyPort, what: 'the readiness listener' }] : [])],
    },
  ];
  for (const { field, port, against } of checks) {
    const taken = port === undefined ? undefined : against.find((a) => a.port === port);
    if (!taken) continue;
    const hint = field === 'app_port' ? '; give the port the application listens on at 127.0.0.1' : '';
    return { field, detail: `${field}: port ${port} is taken by ${taken.what} in this sidecar${hint}` };
  }
  return undefined;
}
