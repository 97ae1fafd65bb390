// What the registry says, as authz needs it: did A declare B, and what ingress a
// service has. Read from the watched in-memory mirror of etcd
// (MeshWatcher) — never a round trip on the request path.
import { mayCall, type CallDecision } from '@trellis/mesh-contracts';
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

export interface IngressMatch {
  service: string;
  ingress: Ingress;
}

export class MeshPolicy {
  constructor(private readonly view: MeshView) {}

  get ready(): boolean {
    return this.view.ready;
  }

  allowsCall(source: string, destination: string): CallDecision {
    const { services } = this.view.state;
    return mayCall(services.get(source)?.value.spec, destination, (service) => services.has(service));
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
}
