// Turns a proxy snapshot into JSON people can read: every resource decoded with
// the generated Envoy types, in proto3 JSON (Any with "@type", Durations as "2s"),
// as Envoy's admin /config_dump prints it. Secrets are listed by name only.
import { TYPE_SHORT_NAME, TypeUrl, unpackAny } from '@trellis/envoy-types';
import { Duration } from '@trellis/envoy-types/google/protobuf/duration';
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

/**
 * google.protobuf.Duration in proto3 JSON, as Envoy's admin prints it: seconds
 * with 0, 3, 6 or 9 fractional digits and an "s" ("2s", "0.250s").
 */
export function durationJson(d: Pick<Duration, 'seconds' | 'nanos'>): string {
  const seconds = BigInt(d.seconds);
  const nanos = d.nanos;
  const negative = seconds < 0n || nanos < 0;
  const whole = seconds < 0n ? -seconds : seconds;
  if (nanos === 0) return `${negative ? '-' : ''}${whole}s`;
  let fraction = String(Math.abs(nanos)).padStart(9, '0');
  while (fraction.endsWith('000')) fraction = fraction.slice(0, -3);
  return `${negative ? '-' : ''}${whole}.${fraction}s`;
}

/**
 * ts-proto's toJSON prints a Duration as {seconds, nanos}; proto3 JSON (and every
 * tool reading Envoy config dumps) wants "2s". The generated code calls
 * Duration.toJSON by property lookup, so it is swapped for the length of one
 * synchronous dump and put back.
 */
function withProto3Durations<T>(build: () => T): T {
  const generated = Duration.toJSON;
  Duration.toJSON = (message: Duration) => durationJson(message);
  try {
    return build();
  } finally {
    Duration.toJSON = generated;
  }
}

export function configDump(snapshot: ProxySnapshot): ConfigDump {
  return withProto3Durations(() => dump(snapshot));
}

function dump(snapshot: ProxySnapshot): ConfigDump {
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
