// What the agent asks of the registry for its one instance, through the generated
// client, authenticated with the service's credential.
import { ok, RegistryError, type Instance, type RegistryClient } from '../registry/registry-client';
import type { Registration } from './registration';

/** The agent's view of the registry; `lost` means the instance (its lease) is gone and must be registered again. */
export interface InstanceRegistrar {
  register(): Promise<Instance>;
  heartbeat(): Promise<'ok' | 'lost'>;
  drain(): Promise<'ok' | 'lost'>;
  /** False when it was already gone. */
  deregister(): Promise<boolean>;
}

export function registryRegistrar(client: RegistryClient, service: string, registration: Registration): InstanceRegistrar {
  const path = { name: service, id: registration.id };
  const what = (op: string) => `${op} ${service}/${registration.id}`;
  const goneOr = <T>(result: { data?: T; error?: unknown; response: Response }, op: string, value: 'ok' | boolean) => {
    if (result.response.status === 404) return value === 'ok' ? ('lost' as const) : false;
    ok(result, what(op));
    return value;
  };
  return {
    async register() {
      return ok(
        await client.POST('/api/v1/services/{name}/instances', { params: { path: { name: service } }, body: registration }),
        what('register'),
      );
    },
    async heartbeat() {
      return goneOr(await client.PUT('/api/v1/services/{name}/instances/{id}/heartbeat', { params: { path } }), 'heartbeat', 'ok') as
        'ok' | 'lost';
    },
    async drain() {
      return goneOr(await client.PUT('/api/v1/services/{name}/instances/{id}/drain', { params: { path } }), 'drain', 'ok') as 'ok' | 'lost';
    },
    async deregister() {
      return goneOr(await client.DELETE('/api/v1/services/{name}/instances/{id}', { params: { path } }), 'deregister', true) as boolean;
    },
  };
}

export { RegistryError };
