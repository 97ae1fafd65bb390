import type { ServiceRecord } from '@trellis/mesh-schema';
import { buildTopology, neighbours } from './topology';

const record = (name: string, team: string, deps: string[] = []): ServiceRecord => ({
  spec: { name, team, description: '', protocol: 'http', port: 80, dependencies: deps.map((service) => ({ service })), policy: {} },
  generation: 1,
  created: { actor: 'admin', at: '2026-01-01T00:00:00.000Z' },
  updated: { actor: 'admin', at: '2026-01-01T00:00:00.000Z' },
});

describe('buildTopology', () => {
  const topology = buildTopology(
    [record('web', 'edge', ['orders', 'ghost']), record('orders', 'shop', ['web'])],
    [{ service: 'orders' }, { service: 'orders' }, { service: 'ghost' }],
  );

  it('lists registered services and marks undeclared dependencies missing, sorted by name', () => {
    expect(topology.nodes).toEqual([
      { name: 'ghost', registered: false, instances: 1 },
      { name: 'orders', team: 'shop', protocol: 'http', registered: true, instances: 2 },
      { name: 'web', team: 'edge', protocol: 'http', registered: true, instances: 0 },
    ]);
  });

  it('has one edge per dependency, cycles included, sorted', () => {
    expect(topology.edges).toEqual([
      { from: 'orders', to: 'web', admitted: true },
      { from: 'web', to: 'ghost', admitted: false },
      { from: 'web', to: 'orders', admitted: true },
    ]);
  });

  it('finds callers and callees of a service', () => {
    expect(neighbours(topology, 'web')).toEqual({ callers: ['orders'], callees: ['ghost', 'orders'] });
    expect(neighbours(topology, 'ghost')).toEqual({ callers: ['web'], callees: [] });
  });

  it('is empty for an empty mesh', () => {
    expect(buildTopology([], [])).toEqual({ nodes: [], edges: [] });
  });
});
