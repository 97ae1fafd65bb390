import { layoutTopology, renderTopologySvg } from './topology-svg';
import type { Topology } from '../topology';

const topology: Topology = {
  nodes: [
    { name: 'api', team: 'edge', protocol: 'http', registered: true, instances: 1 },
    { name: 'db', registered: false, instances: 0 },
    { name: 'orders', team: 'shop', protocol: 'grpc', registered: true, instances: 3 },
  ],
  edges: [
    { from: 'api', to: 'orders', admitted: true },
    { from: 'orders', to: 'db', admitted: false },
  ],
};

describe('layoutTopology', () => {
  it('places callers left of their callees and every edge has a path', () => {
    const laid = layoutTopology(topology);
    const x = (name: string) => laid.nodes.find((n) => n.name === name)!.x;
    expect(x('api')).toBeLessThan(x('orders'));
    expect(x('orders')).toBeLessThan(x('db'));
    expect(laid.edges.every((e) => e.points.length >= 2)).toBe(true);
    expect(laid.width).toBeGreaterThan(0);
  });
});

describe('renderTopologySvg', () => {
  it('links registered services, marks missing ones and escapes names', () => {
    const svg = renderTopologySvg(topology, (name) => `/ui/services/${name}`).value;
    expect(svg).toContain('<a href="/ui/services/api">');
    expect(svg).toContain('data-service="db" data-registered="false"');
    expect(svg).toContain('missing: not registered');
    expect(svg).not.toContain('<a href="/ui/services/db">');
    expect(svg.match(/class="edge/g)).toHaveLength(2);
    // The call to the unregistered service is drawn as refused, with the reason in its tooltip.
    expect(svg).toContain('data-from="orders" data-to="db" data-admitted="false"');
    expect(svg).toContain('orders calls db (refused: db is not registered)');
  });

  it('says so when there is nothing to draw', () => {
    expect(renderTopologySvg({ nodes: [], edges: [] }, () => '').value).toContain('No services registered yet');
  });
});
