// What the registry's GETs read — services, instances, topology — from one of
// two sources with the same answers: the in-memory view (normally) or etcd
// (when the view has not caught up with this process's writes in time).
import type { InstanceRecord, MeshState, MeshStore, ServiceRecord, Versioned } from '@trellis/mesh-schema';
import type { ServiceListQuery } from './api/schemas';
import { buildTopology, type Topology } from './topology';
import type { RegistryView } from './view';

export interface MeshReads {
  /** Seconds since the source was known current: 0 for etcd and for a view whose watch runs. */
  readonly ageSeconds: number;
  services(query?: ServiceListQuery): Promise<Versioned<ServiceRecord>[]>;
  service(name: string): Promise<Versioned<ServiceRecord> | undefined>;
  instances(service: string): Promise<InstanceRecord[]>;
  topology(): Promise<Topology>;
}

/** Pure: the services a list query selects, sorted by name. */
export function selectServices(sorted: ReadonlyArray<Versioned<ServiceRecord>>, query: ServiceListQuery = {}): Versioned<ServiceRecord>[] {
  const needle = query.q?.toLowerCase();
  return sorted.filter(({ value: { spec } }) => {
    if (query.team && spec.team !== query.team) return false;
    if (query.protocol && spec.protocol !== query.protocol) return false;
    if (query.dependsOn && !spec.dependencies.some((d) => d.service === query.dependsOn)) return false;
    if (needle && !spec.name.includes(needle) && !spec.description.toLowerCase().includes(needle)) return false;
    return true;
  });
}

const byName = (a: Versioned<ServiceRecord>, b: Versioned<ServiceRecord>) => compare(a.value.spec.name, b.value.spec.name);
/** Instance ids mix cases: the order the API has always given. */
const byId = (a: InstanceRecord, b: InstanceRecord) => a.id.localeCompare(b.id);
/** Service names are lowercase DNS labels: code-unit order is their locale order, and far cheaper. */
const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Reads from the mirror; what every read of one state shares (the sorted list, the topology) is built once. */
export function viewReads(view: RegistryView, state: MeshState): MeshReads {
  const sortedServices = () => view.derive('services', (s) => [...s.services.values()].sort(byName));
  return {
    ageSeconds: view.ageSeconds(),
    services: async (query) => (hasFilter(query) ? selectServices(sortedServices(), query) : sortedServices()),
    service: async (name) => state.services.get(name),
    instances: async (service) => [...(state.instances.get(service)?.values() ?? [])].sort(byId),
    topology: async () =>
      view.derive('topology', (s) =>
        buildTopology(
          sortedServices().map((v) => v.value),
          [...s.instances.values()].flatMap((ofService) => [...ofService.values()]),
        ),
      ),
  };
}

/** Reads straight from etcd (each call one or two range reads). */
export function storeReads(store: MeshStore): MeshReads {
  return {
    ageSeconds: 0,
    services: async (query) => selectServices((await store.listServices()).sort(byName), query),
    service: (name) => store.getService(name),
    instances: async (service) => (await store.listInstances(service)).sort(byId),
    topology: async () => {
      const [services, instances] = await Promise.all([store.listServices(), store.listInstances()]);
      return buildTopology(
        services.map((s) => s.value),
        instances,
      );
    },
  };
}

function hasFilter(query: ServiceListQuery | undefined): boolean {
  return query !== undefined && Object.values(query).some((v) => v !== undefined && v !== '');
}
