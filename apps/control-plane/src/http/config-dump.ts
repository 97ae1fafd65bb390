// Turns a proxy snapshot into JSON people can read: every resource decoded with
// the generated Envoy types. Secrets are listed by name only.
import { TYPE_SHORT_NAME, TypeUrl, unpackAny } from '@trellis/envoy-types';
import { messageTypeRegistry } from '@trellis/envoy-types/typeRegistry';
// Importing the resource modules registers their types for unpackAny.
import '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import '@trellis/envoy-types/envoy/config/listener/v3/listener';
import '@trellis/envoy-types/envoy/config/route/v3/route';
import type { ProxySnapshot } from '../xds/snapshot-cache';

export interface ConfigDump {
  service: string;
  kind: string;
  meshRevision: string;
  types: Record<string, { version: string; resources: unknown[] }>;
}

export function configDump(snapshot: ProxySnapshot): ConfigDump {
  const types: ConfigDump['types'] = {};
  for (const [typeUrl, type] of snapshot.types) {
    types[TYPE_SHORT_NAME[typeUrl]] = {
      version: type.version,
      resources: [...type.resources.values()].map((resource) => {
        if (typeUrl === TypeUrl.Secret) return { name: resource.name, secret: '[redacted]' };
        const { typeName, message } = unpackAny(resource.any);
        return { '@type': resource.any.typeUrl, ...(messageTypeRegistry.get(typeName)!.toJSON(message) as object) };
      }),
    };
  }
  return { service: snapshot.identity.service, kind: snapshot.identity.kind, meshRevision: snapshot.meshRevision, types };
}
