// What the registry says, as authz needs it: did A declare B, and what ingress a
// service has. Read from the watched in-memory mirror of etcd
// (MeshWatcher) — never a round trip on the request path.
import type { AuthzPublicKey, Ingress, MeshSettings, ServiceRecord } from '@trellis/mesh-schema';

/** The slice of MeshWatcher authz reads; MeshWatcher satisfies it. */
export interface MeshView {
  readonly ready: boolean;
  readonly state: {
    readonly services: ReadonlyMap<string, { readonly value: ServiceRecord }>;
    readonly meshSettings?: MeshSettings | undefined;
    readonly authzKeys: ReadonlyMap<string, AuthzPublicKey>;
  };
}

/** Why a call between two services is refused. */
export const CALL_REFUSALS = ['unknown-source', 'unknown-destination', 'undeclared'] as const;
export type CallDecision = { allowed: true } | { allowed: false; reason: (typeof CALL_REFUSALS)[number] };

export interface IngressMatch {
  service: string;
  ingress: Ingress;
}

export class MeshPolicy {
  // Dependencies as sets, memoised per record object: a changed record is a new object.
  private readonly dependencySets = new WeakMap<object, ReadonlySet<string>>();

  constructor(private readonly view: MeshView) {}

  get ready(): boolean {
    return this.view.ready;
  }

  allowsCall(source: string, destination: string): CallDecision {
    const caller = this.view.state.services.get(source);
    if (!caller) return { allowed: false, reason: 'unknown-source' };
    if (!this.view.state.services.has(destination)) return { allowed: false, reason: 'unknown-destination' };
    return this.dependenciesOf(caller.value).has(destination) ? { allowed: true } : { allowed: false, reason: 'undeclared' };
  }

  /** Cloudflare Access team domains named by any ingress. */
  accessTeamDomains(): string[] {
    const domains = new Set<string>();
    for (const { value } of this.view.state.services.values()) {
      const teamDomain = value.spec.ingress?.cloudflareAccess?.teamDomain;
      if (teamDomain) domains.add(teamDomain);
    }
    return [...domains].sort();
  }

  /** The ingress of one service (when the route already says which service it fronts). */
  ingressOf(service: string): IngressMatch | undefined {
    const ingress = this.view.state.services.get(service)?.value.spec.ingress;
    return ingress ? { service, ingress } : undefined;
  }

  private dependenciesOf(record: ServiceRecord): ReadonlySet<string> {
    let set = this.dependencySets.get(record);
    if (!set) {
      set = new Set(record.spec.dependencies.map((dep) => dep.service));
      this.dependencySets.set(record, set);
    }
    return set;
  }
}
