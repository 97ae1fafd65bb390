// What the registry says, as authz needs it: did A declare B, and which ingress
// serves a host and path. Read from the watched in-memory mirror of etcd
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

export type CallDecision = { allowed: true } | { allowed: false; reason: 'unknown-source' | 'unknown-destination' | 'undeclared' };

export interface IngressMatch {
  service: string;
  ingress: Ingress;
}

export class MeshPolicy {
  // Dependencies as sets, memoised per record object: a changed record is a new object.
  private readonly dependencySets = new WeakMap<object, ReadonlySet<string>>();
  private ingressIndex: Map<string, IngressMatch[]> | undefined;

  constructor(private readonly view: MeshView) {}

  get ready(): boolean {
    return this.view.ready;
  }

  /** Call after every watcher update: the ingress index is rebuilt on next use. */
  invalidate(): void {
    this.ingressIndex = undefined;
  }

  allowsCall(source: string, destination: string): CallDecision {
    const caller = this.view.state.services.get(source);
    if (!caller) return { allowed: false, reason: 'unknown-source' };
    if (!this.view.state.services.has(destination)) return { allowed: false, reason: 'unknown-destination' };
    return this.dependenciesOf(caller.value).has(destination) ? { allowed: true } : { allowed: false, reason: 'undeclared' };
  }

  /** The ingress whose host matches and whose path prefix is the longest match, on path-segment boundaries. */
  ingressFor(host: string, path: string): IngressMatch | undefined {
    const candidates = this.indexIngress().get(normaliseHost(host));
    if (!candidates) return undefined;
    const pathOnly = path.split(/[?#]/, 1)[0] || '/';
    return candidates.find(({ ingress }) => pathMatchesPrefix(pathOnly, ingress.pathPrefix));
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

  private indexIngress(): Map<string, IngressMatch[]> {
    if (this.ingressIndex) return this.ingressIndex;
    const index = new Map<string, IngressMatch[]>();
    for (const [service, { value }] of this.view.state.services) {
      const ingress = value.spec.ingress;
      if (!ingress) continue;
      const host = normaliseHost(ingress.host);
      index.set(host, [...(index.get(host) ?? []), { service, ingress }]);
    }
    // Longest prefix first; ties by service name so the answer is deterministic.
    for (const list of index.values())
      list.sort((a, b) => b.ingress.pathPrefix.length - a.ingress.pathPrefix.length || a.service.localeCompare(b.service));
    this.ingressIndex = index;
    return index;
  }
}

function normaliseHost(host: string): string {
  const lower = host.trim().toLowerCase();
  // Strip a port, but not from a bracketed IPv6 literal's inside.
  const withoutPort = lower.startsWith('[') ? lower.slice(0, lower.indexOf(']') + 1) : lower.replace(/:\d+$/, '');
  return withoutPort.replace(/\.$/, '');
}

export function pathMatchesPrefix(path: string, prefix: string): boolean {
  if (prefix === '/' || path === prefix) return true;
  const base = prefix.endsWith('/') ? prefix : `${prefix}/`;
  return path.startsWith(base);
}
