// The topology picture: laid out on the server with dagre, emitted as inline
// SVG (no client script). Services that are depended on but not registered
// are drawn dashed and labelled "missing".
import { graphlib, layout } from '@dagrejs/dagre';
import type { Topology } from '../topology';
import { html, join } from './html';
import type { Html } from './html';

const NODE_WIDTH = 168;
const NODE_HEIGHT = 48;
const MARGIN = 24;

export interface PositionedNode {
  name: string;
  x: number;
  y: number;
  registered: boolean;
  subtitle: string;
}

export interface PositionedEdge {
  from: string;
  to: string;
  admitted: boolean;
  points: Array<{ x: number; y: number }>;
}

export interface TopologyLayout {
  width: number;
  height: number;
  nodes: PositionedNode[];
  edges: PositionedEdge[];
}

/** Pure: positions every node and edge, left (callers) to right (callees). */
export function layoutTopology(topology: Topology): TopologyLayout {
  const graph = new graphlib.Graph({ multigraph: false });
  graph.setGraph({ rankdir: 'LR', nodesep: 24, ranksep: 72, marginx: MARGIN, marginy: MARGIN });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const node of topology.nodes) graph.setNode(node.name, { width: NODE_WIDTH, height: NODE_HEIGHT });
  for (const edge of topology.edges) graph.setEdge(edge.from, edge.to);
  layout(graph);

  const size = graph.graph();
  return {
    width: Math.ceil(size.width ?? 0),
    height: Math.ceil(size.height ?? 0),
    nodes: topology.nodes.map((node) => {
      const position = graph.node(node.name);
      return {
        name: node.name,
        x: position.x,
        y: position.y,
        registered: node.registered,
        subtitle: node.registered
          ? `${node.team ?? ''} · ${node.instances} instance${node.instances === 1 ? '' : 's'}`
          : 'missing: not registered',
      };
    }),
    edges: topology.edges.map((edge) => ({
      from: edge.from,
      to: edge.to,
      admitted: edge.admitted,
      points: graph.edge({ v: edge.from, w: edge.to })?.points ?? [],
    })),
  };
}

export function renderTopologySvg(topology: Topology, linkTo: (name: string) => string): Html {
  if (topology.nodes.length === 0) return html`<p class="empty">No services registered yet.</p>`;
  const laid = layoutTopology(topology);
  const edges = laid.edges.map(
    (edge) =>
      html`<path class="edge${edge.admitted ? '' : ' refused'}" data-from="${edge.from}" data-to="${edge.to}" data-admitted="${String(edge.admitted)}" d="${edge.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${round(p.x)},${round(p.y)}`).join(' ')}" fill="none" stroke="${edge.admitted ? '#555' : '#c0392b'}" stroke-width="1.5"${edge.admitted ? '' : ' stroke-dasharray="5 3"'} marker-end="url(#arrow)"><title>${edge.from} calls ${edge.to}${edge.admitted ? '' : ` (refused: ${edge.to} is not registered)`}</title></path>`,
  );
  const nodes = laid.nodes.map((node) => {
    const x = round(node.x - NODE_WIDTH / 2);
    const y = round(node.y - NODE_HEIGHT / 2);
    const box = node.registered
      ? html`<rect x="${x}" y="${y}" width="${NODE_WIDTH}" height="${NODE_HEIGHT}" rx="6" fill="#eef4ff" stroke="#2a5bd7" stroke-width="1.5"/>`
      : html`<rect x="${x}" y="${y}" width="${NODE_WIDTH}" height="${NODE_HEIGHT}" rx="6" fill="#fff4f0" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="5 3"/>`;
    const label = html`<text x="${round(node.x)}" y="${round(node.y - 4)}" text-anchor="middle" font-size="13" font-weight="bold" fill="#111">${node.name}</text><text x="${round(node.x)}" y="${round(node.y + 13)}" text-anchor="middle" font-size="11" fill="${node.registered ? '#444' : '#c0392b'}">${node.subtitle}</text>`;
    const group = html`<g class="node${node.registered ? '' : ' missing'}" data-service="${node.name}" data-registered="${String(node.registered)}">${box}${label}</g>`;
    return node.registered ? html`<a href="${linkTo(node.name)}">${group}</a>` : group;
  });
  return html`<svg xmlns="http://www.w3.org/2000/svg" class="topology" role="img" aria-label="service topology" width="${laid.width}" height="${laid.height}" viewBox="0 0 ${laid.width} ${laid.height}"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>${join(edges)}${join(nodes)}</svg>`;
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
