// Ports a sidecar binds, and which of them an app_port or admin_port would take.
// Envoy refuses to start (or a listener fails to bind) when two of them meet, so
// /bootstrap/{service} refuses the request naming the field instead.
import type { MeshModel, ServiceModel } from '../model';

export interface PortCollision {
  field: 'app_port' | 'admin_port';
  detail: string;
}

/** What else binds a port in this service's sidecar: inbound listener, outbound listener, admin, TCP dependencies. */
function sidecarPorts(model: MeshModel, service: ServiceModel, adminPort: number): Array<{ port: number; what: string }> {
  const ports = [
    { port: model.settings.outboundPort, what: 'the outbound listener' },
    { port: adminPort, what: "Envoy's admin interface" },
  ];
  if (service.inbound) ports.unshift({ port: service.port, what: "the inbound listener (the service's port)" });
  for (const dep of service.dependencies) {
    const callee = model.services.get(dep.service);
    if (callee?.protocol === 'tcp') ports.push({ port: callee.port, what: `the listener of TCP dependency "${callee.name}"` });
  }
  return ports;
}

/** The first collision of `appPort` or `adminPort` with a port the sidecar binds, or undefined. */
export function bootstrapPortCollision(
  model: MeshModel,
  service: ServiceModel,
  appPort: number,
  adminPort: number | undefined,
): PortCollision | undefined {
  const admin = adminPort ?? model.settings.adminPort;
  if (adminPort !== undefined) {
    const taken = sidecarPorts(model, service, admin).find((p) => p.port === adminPort && p.what !== "Envoy's admin interface");
    if (taken) return { field: 'admin_port', detail: `admin_port: port ${adminPort} is taken by ${taken.what} in this sidecar` };
  }
  const taken = sidecarPorts(model, service, admin).find((p) => p.port === appPort);
  if (taken) {
    return {
      field: 'app_port',
      detail: `app_port: port ${appPort} is taken by ${taken.what} in this sidecar; give the port the application listens on at 127.0.0.1`,
    };
  }
  return undefined;
}
