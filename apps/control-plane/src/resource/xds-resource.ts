// What translation produces and the xDS cache serves: an encoded resource, a
// proxy identity, and a ResourceSet per identity. The cache shares resources
// across identities by `hash` and derives versions from it, so equal content
// always means an equal version.
import { byName, sortInPlace } from '@trellis/mesh-contracts';
import { hash } from 'node:crypto';
import { packAny, TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import type { MessageType, UnknownMessage } from '@trellis/envoy-types/typeRegistry';

export interface XdsResource {
  name: string;
  typeUrl: XdsTypeUrl;
  any: Any;
  /** sha256 of the encoded resource, hex */
  hash: string;
}

/** Every xDS type is present (possibly empty); within a type, keys are resource names. */
export type ResourceSet = Map<XdsTypeUrl, Map<string, XdsResource>>;

export type ProxyKind = 'envoy' | 'proxyless';

/** What a proxy's config depends on: its service (`node.cluster`) and whether it is an Envoy. */
export interface ProxyIdentity {
  service: string;
  kind: ProxyKind;
  /** A sidecar's own outbound listener port (node metadata `trellis.outbound_port`); absent: the mesh-wide one. */
  outboundPort?: number;
}

/** proxyless when `node.user_agent_name` is not "envoy" (grpc-js-xds sends "gRPC Node"). */
export function proxyKindOf(userAgentName: string | undefined): ProxyKind {
  return userAgentName === 'envoy' ? 'envoy' : 'proxyless';
}

/** Encodes a message once and wraps it as an XdsResource. */
export function makeResource<M extends UnknownMessage>(typeUrl: XdsTypeUrl, type: MessageType<M>, name: string, message: M): XdsResource {
  return encodedResource(typeUrl, name, packAny(type, message));
}

/** Wraps a message already encoded (by a builder that writes its bytes itself) as an XdsResource. */
export function encodedResource(typeUrl: XdsTypeUrl, name: string, any: Any): XdsResource {
  if (any.typeUrl !== typeUrl) throw new Error(`makeResource: ${name} is ${any.typeUrl}, expected ${typeUrl}`);
  return { name, typeUrl, any, hash: hash('sha256', any.value, 'hex') };
}

const PUSH_ORDER: readonly XdsTypeUrl[] = [
  TypeUrl.Secret,
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
];

/** An empty ResourceSet with every type present, in push order. */
export function emptyResourceSet(): ResourceSet {
  const set: ResourceSet = new Map();
  for (const typeUrl of PUSH_ORDER) set.set(typeUrl, new Map());
  return set;
}

/** Builds a ResourceSet from resources in any order; each type's map is sorted by name. Duplicate names are a bug. */
export function toResourceSet(resources: readonly XdsResource[]): ResourceSet {
  // Sorted by name as one list, then each put in its type's map in that order: an identity has a handful of
  // resources, and a connection storm assembles thousands of sets, so this allocates no per-type groups.
  const set = emptyResourceSet();
  for (const resource of sortInPlace(resources.slice(), byName)) {
    const byType = set.get(resource.typeUrl)!;
    if (byType.has(resource.name)) throw new Error(`duplicate ${resource.typeUrl} resource "${resource.name}"`);
    byType.set(resource.name, resource);
  }
  return set;
}
