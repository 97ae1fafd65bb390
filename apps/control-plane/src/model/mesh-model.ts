// The intermediate mesh model: who calls whom, with which policy, reaching which
// endpoints. Built from the registry's records (buildMeshModel), consumed by the
// Envoy translation (../envoy). Plain data, never mutated after it is built.
import type { Ingress, InstanceRecord, Locality, MtlsMode, Protocol, ServiceRecord, TrafficPolicy } from '@trellis/mesh-schema';

export interface TranslatorSettings {
  /** Where sidecars reach authz's ext_authz gRPC service. */
  authzCluster: { host: string; port: number };
  /**
   * authz serves ext_authz over mTLS (its production setting): sidecars present their
   * workload certificate, from which authz takes the caller, and accept only authz's
   * own SPIFFE ID. Off only for an authz that serves plaintext (local development).
   */
  authzTls: boolean;
  /** ext_authz call timeout; when it passes the request is refused (fail closed). */
  authzTimeoutMs: number;
  /** Port of the outbound HTTP listener on 127.0.0.1 in every sidecar. */
  outboundPort: number;
  /** Envoy's admin port on 127.0.0.1 in every sidecar (the bootstrap puts it there). */
  adminPort: number;
  /** Upstream connect timeout of every cluster. */
  connectTimeoutMs: number;
  /** Mesh token issuer used until `mesh/settings` exists (authz writes it at start). */
  defaultTokenIssuer: string;
  /** Where sidecars send spans (OTLP over gRPC) and how many; undefined: trace context only, nothing recorded. */
  tracing?: TracingSettings | undefined;
}

export interface TracingSettings {
  collector: { host: string; port: number };
  /** Share of requests without a sampling decision that start a recorded trace, 0-100. */
  samplingPercent: number;
}

export const DEFAULT_TRANSLATOR_SETTINGS: TranslatorSettings = {
  authzCluster: { host: '127.0.0.1', port: 9191 },
  authzTls: true,
  authzTimeoutMs: 500,
  outboundPort: 15001,
  adminPort: 15000,
  connectTimeoutMs: 1000,
  defaultTokenIssuer: 'trellis',
};

export interface EndpointModel {
  instanceId: string;
  address: string;
  port: number;
  weight: number;
  /** The instance is draining: sent as EDS DRAINING, so proxies and proxyless clients pick it no more. */
  draining?: true;
}

export interface LocalityEndpoints {
  locality: Locality;
  /** Sum of the endpoint weights (grpc-js-xds drops a locality without a weight). */
  weight: number;
  endpoints: EndpointModel[];
}

/** A set of endpoints callers route to: the whole service, or one traffic-split subset. */
export interface UpstreamModel {
  /** Subset name; undefined for the whole service. */
  subset?: string;
  /** Share of traffic (0-100) when the service splits traffic; 100 otherwise. */
  weight: number;
  localities: LocalityEndpoints[];
}

/**
 * What a caller declared of one dependency, and nothing of the callee: the callee's
 * policy lives once in the callee's model, and translation applies `override` over
 * it (dependencyPolicy), so a change to a callee that thousands call changes one
 * ServiceModel, not every caller's.
 */
export interface DependencyModel {
  service: string;
  /** Only what the caller set itself, applied over the callee's policy field by field; a local rate limit here limits this caller's outbound calls. */
  override?: TrafficPolicy;
  /** The caller's generation since which it has declared this dependency without a break (ServiceRecord.dependencySince). */
  since: number;
}

export interface ServiceModel {
  name: string;
  team: string;
  protocol: Protocol;
  port: number;
  policy: TrafficPolicy;
  /** Reachable from the edge: the inbound side runs ext_authz for requests without a mesh token. */
  ingress?: Ingress;
  /** Transport security of the inbound side (absent in the record: off); callers use TLS unless it is off. */
  mtls: MtlsMode;
  /**
   * False when the service's port is one its sidecars reserve (outbound or
   * admin): they then get no inbound listener rather than one Envoy cannot bind.
   */
  inbound: boolean;
  /** Dependencies that exist, sorted by service name. */
  dependencies: DependencyModel[];
  /** Services that declared this one as a dependency, sorted: the only mesh callers RBAC admits. */
  callers: string[];
  /** What callers route to: one upstream for the whole service, or one per weighted subset (weight > 0). */
  upstreams: UpstreamModel[];
  /** Every live instance, by locality (the whole-service cluster). */
  localities: LocalityEndpoints[];
  /** etcd mod revision of the service record. */
  modRevision: string;
}

export interface MeshTokens {
  issuer: string;
  clockSkewSeconds: number;
  /** JWKS JSON of every published authz key, sorted by kid; inlined into jwt_authn. */
  jwks: string;
  keyIds: string[];
}

export interface DroppedInput {
  kind: 'service' | 'dependency' | 'instance' | 'deregistration' | 'authzKey' | 'meshSettings' | 'trafficSplit';
  name: string;
  reason: string;
}

export interface MeshModel {
  /** etcd revision the model was built at. */
  revision: string;
  settings: TranslatorSettings;
  services: ReadonlyMap<string, ServiceModel>;
  tokens: MeshTokens;
  /** SPIFFE trust domain of workload certificates (`mesh/settings.trustDomain`). */
  trustDomain: string;
  /** Inputs left out of the model, each with why (shown in logs and /debug). */
  dropped: DroppedInput[];
  /** Digest of what every proxy shares: mesh tokens, trust domain and translator settings. */
  sharedDigest: string;
  /** Per-service parts with the exact records they were built from, for reuse by the next build. */
  memo: ReadonlyMap<string, ServiceMemo>;
  /** What lets the next build start from this one instead of from scratch (buildMeshModel). */
  index: MeshIndex;
}

/** Bookkeeping of an incremental build; never read by translation. */
export interface MeshIndex {
  /** Unique per model, so a model built from another can say from which. */
  generation: number;
  /**
   * Set when built from a previous model (undefined, not absent, otherwise: every model's index has one shape): the services whose own inputs were looked at
   * again (their identity fingerprint may differ from that model's), and the services
   * whose exposed part changed or that came or went (their callers' fingerprints may
   * differ). No other identity's config can differ.
   */
  touched: { since: number; services: ReadonlySet<string>; exposed: ReadonlySet<string> } | undefined;
  /** Every stored service record by key (also one naming another service), as this model read it. */
  records: ReadonlyMap<string, ServiceRecord>;
  /** A copy of the instances of every service name that has some. */
  instances: ReadonlyMap<string, ReadonlyMap<string, InstanceRecord>>;
  /** What each stored record declares as its dependencies, in its order. */
  declares: ReadonlyMap<string, readonly string[]>;
  /** Who declares each name as a dependency, registered or not. */
  declaredBy: ReadonlyMap<string, ReadonlySet<string>>;
  /** Inputs left out on account of each service name (only names with some). */
  droppedOf: ReadonlyMap<string, ServiceDrops>;
  /** `droppedOf`, flattened in `dropped` order. */
  serviceDropped: DroppedInput[];
}

/** The dropped inputs of one service name, by the kinds `MeshModel.dropped` lists one after the other. */
export interface ServiceDrops {
  unregisteredDependencies: DroppedInput[];
  unregisteredInstances: DroppedInput[];
  own: DroppedInput[];
  dependencies: DroppedInput[];
}

/** What buildMeshModel may reuse for a service whose record and instance records are unchanged. */
export interface ServiceMemo {
  record: ServiceRecord;
  instances: ReadonlyMap<string, InstanceRecord>;
  localities: LocalityEndpoints[];
  upstreams: UpstreamModel[];
  dropped: readonly DroppedInput[];
  /** Digest of what callers see: protocol, port, policy, upstreams and (when they are subsets) every endpoint. */
  exposedDigest: string;
  /** Digest of the service's own spec as its proxies use it. */
  specDigest: string;
  /**
   * Resolved dependencies and what they were resolved from of each declared callee:
   * whether it is in the model, its protocol and its port (calleeShape), nothing else. Undefined until resolved.
   */
  dependencies:
    { calleeShapes: ReadonlyArray<string | undefined>; models: DependencyModel[]; dropped: readonly DroppedInput[] } | undefined;
}
