// The etcd key layout, under one prefix (default `/trellis/`). Every key Trellis
// reads or writes is built here and nowhere else.
import { DNS_LABEL } from '@trellis/mesh-contracts';

export const DEFAULT_PREFIX = '/trellis/';

export type RecordKind = 'service' | 'instance' | 'deregistration' | 'history' | 'meshSettings' | 'authzKey' | 'proxyStatus' | 'hostClaim';

export interface ParsedKey {
  kind: RecordKind;
  /** Service name for service, instance, history and proxy keys. */
  service?: string;
  /** Instance id, history generation or proxy node id; key id for authz keys; the host of a host claim. */
  id?: string;
}

const GENERATION_WIDTH = 10;

export class KeyLayout {
  readonly prefix: string;

  constructor(prefix: string = DEFAULT_PREFIX) {
    if (!prefix.startsWith('/') || !prefix.endsWith('/') || prefix.includes('//')) {
      throw new Error(`etcd key prefix must start and end with "/" and have no empty segment, got "${prefix}"`);
    }
    this.prefix = prefix;
  }

  // Records.
  service(name: string): string {
    return `${this.prefix}services/${segment(name)}`;
  }
  instance(service: string, id: string): string {
    return `${this.instancesOf(service)}${segment(id)}`;
  }
  /** The tombstone of an instance deregistered on purpose (see InstanceDeregistration). */
  deregistration(service: string, id: string): string {
    return `${this.deregistrations()}${segment(service)}/${segment(id)}`;
  }
  history(service: string, generation: number): string {
    return `${this.historyOf(service)}${String(generation).padStart(GENERATION_WIDTH, '0')}`;
  }
  meshSettings(): string {
    return `${this.prefix}mesh/settings`;
  }
  authzKey(kid: string): string {
    return `${this.authzKeys()}${segment(kid)}`;
  }
  hostClaim(host: string): string {
    return `${this.hostClaims()}${segment(host)}`;
  }
  /** One record per xDS stream: two streams claiming the same node id never share a key. Outside the mesh watch (statusRecords). */
  proxyStatus(service: string, nodeId: string, stream: string): string {
    // Node ids are free-form (Envoy accepts any string): encode so they stay one segment.
    return `${this.proxyStatusesOf(service)}${encodeURIComponent(nodeId)}/${encodeURIComponent(stream)}`;
  }

  // Ranges (prefixes to list or watch).
  services(): string {
    return `${this.prefix}services/`;
  }
  instances(): string {
    return `${this.prefix}instances/`;
  }
  instancesOf(service: string): string {
    return `${this.instances()}${segment(service)}/`;
  }
  deregistrations(): string {
    return `${this.prefix}deregistered/`;
  }
  historyOf(service: string): string {
    return `${this.prefix}history/${segment(service)}/`;
  }
  authzKeys(): string {
    return `${this.prefix}authz/keys/`;
  }
  hostClaims(): string {
    return `${this.prefix}hosts/`;
  }
  /**
   * What replicas write about their own work (proxy status): observability that no mesh watcher mirrors. It sorts
   * after every other key of the layout, so the mesh watch's range ends where it begins (meshWatchRange) and etcd
   * never sends a watcher these writes — thousands after each change at 5,000 proxies, once to every control plane,
   * registry and authz replica.
   */
  statusRecords(): string {
    return `${this.prefix}status/`;
  }
  proxyStatuses(): string {
    return `${this.statusRecords()}proxies/`;
  }
  proxyStatusesOf(service: string): string {
    return `${this.proxyStatuses()}${segment(service)}/`;
  }
  /**
   * Where replicas before the move to statusRecords wrote proxy status (`proxies/<service>/…`). Such records live
   * only as long as their replica's lease: read beside the new ones while a rolling upgrade still runs old
   * replicas, passed over by the mesh watch by their key's bytes.
   */
  legacyProxyStatuses(): string {
    return `${this.prefix}proxies/`;
  }
  legacyProxyStatusesOf(service: string): string {
    return `${this.legacyProxyStatuses()}${segment(service)}/`;
  }
  /** The mesh watch: every key under the prefix that sorts before the status records. */
  meshWatchRange(): { start: string; end: string } {
    return { start: this.prefix, end: this.statusRecords() };
  }

  /** What a key under the prefix names; undefined for keys Trellis does not own. */
  parse(key: string): ParsedKey | undefined {
    if (!key.startsWith(this.prefix)) return undefined;
    const parts = key.slice(this.prefix.length).split('/');
    if (parts.some((p) => p === '')) return undefined; // `a//b` or a trailing `/`: never one of ours
    switch (parts[0]) {
      case 'services':
        return parts.length === 2 && DNS_LABEL.test(parts[1]!) ? { kind: 'service', service: parts[1]! } : undefined;
      case 'instances':
        return parts.length === 3 ? { kind: 'instance', service: parts[1]!, id: parts[2]! } : undefined;
      case 'deregistered':
        return parts.length === 3 ? { kind: 'deregistration', service: parts[1]!, id: parts[2]! } : undefined;
      case 'history':
        return parts.length === 3 ? { kind: 'history', service: parts[1]!, id: parts[2]! } : undefined;
      case 'mesh':
        return parts.length === 2 && parts[1] === 'settings' ? { kind: 'meshSettings' } : undefined;
      case 'authz':
        return parts.length === 3 && parts[1] === 'keys' ? { kind: 'authzKey', id: parts[2]! } : undefined;
      case 'hosts':
        return parts.length === 2 ? { kind: 'hostClaim', id: parts[1]! } : undefined;
      case 'status':
        return parts.length === 5 && parts[1] === 'proxies'
          ? { kind: 'proxyStatus', service: parts[2]!, id: decodeURIComponent(parts[3]!) }
          : undefined;
      case 'proxies':
        // legacyProxyStatuses: four parts (node id, stream); three in records of still older replicas.
        return parts.length === 3 || parts.length === 4
          ? { kind: 'proxyStatus', service: parts[1]!, id: decodeURIComponent(parts[2]!) }
          : undefined;
      default:
        return undefined;
    }
  }
}

/** Refuses anything that could escape its key segment, as a last line behind the zod schemas. */
function segment(value: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what we refuse
  if (value.length === 0 || value.includes('/') || value === '.' || value === '..' || /[\x00-\x1f\x7f]/.test(value)) {
    throw new Error(`not a valid etcd key segment: ${JSON.stringify(value)}`);
  }
  return value;
}
