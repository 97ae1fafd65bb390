// The mesh topology as a graph: who calls whom. Services declared as a
// dependency but never registered appear as nodes with `registered: false`.
import { byName, compareStrings, mayCall } from '@trellis/mesh-contracts';
import type { InstanceRecord, ServiceRecord } from '@trellis/mesh-schema';

export interface TopologyNode {
  name: string;
  /** Owning team; absent for services that are depended on but not registered. */
  team?: string;
  protocol?: string;
  registered: boolean;
  instances: number;
}

export interface TopologyEdge {
  from: string;
  to: string;
  /** Whether the mesh admits this call now (the shared mayCall rule): false while `to` is not registered. */
  admitted: boolean;
}

export interface Topology {
  nodes: TopologyNode[];
  edges: TopologyEdge[];
}

/** Pure: builds the graph from service records and instances, sorted so output is stable. */
export function buildTopology(services: ReadonlyArray<ServiceRecord>, instances: ReadonlyArray<Pick<InstanceRecord, 'service'>>): Topology {
  const instanceCounts = new Map<string, number>();
  for (const instance of instances) instanceCounts.set(instance.service, (instanceCounts.get(instance.service) ?? 0) + 1);

  const nodes = new Map<string, TopologyNode>();
  for (const { spec } of services) {
    nodes.set(spec.name, {
      name: spec.name,
      team: spec.team,
      protocol: spec.protocol,
      registered: true,
      instances: instanceCounts.get(spec.name) ?? 0,
    });
  }
  const registered = new Set(services.map(({ spec }) => spec.name));
  const isRegistered = (service: string) => registered.has(service);
  const edges: TopologyEdge[] = [];
  for (const { spec } of services) {
    for (const dep of spec.dependencies) {
      edges.push({ from: spec.name, to: dep.service, admitted: mayCall(spec, dep.service, isRegistered).allowed });
      if (!nodes.has(dep.service))
        nodes.set(dep.service, { name: dep.service, registered: false, instances: instanceCounts.get(dep.service) ?? 0 });
    }
  }
  return {
    nodes: [...nodes.values()].sort(byName),
    edges: edges.sort((a, b) => compareStrings(a.from, b.from) || compareStrings(a.to, b.to)),
  };
}

/** The neighbours of one service: who calls it and what it calls. */
export function neighbours(topology: Topology, name: string): { callers: string[]; callees: string[] } {
  return {
    callers: topology.edges.filter((e) => e.to === name).map((e) => e.from),
    callees: topology.edges.filter((e) => e.from === name).map((e) => e.to),
  };
}
