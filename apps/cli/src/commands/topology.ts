// `trellis topology [-o dot|json|yaml]`: who calls whom.
import type { Command } from 'commander';
import { ok } from '../registry/registry-client';
import { outputOption, print, type Column } from '../output';
import { registryOf } from './clients';

interface Topology {
  nodes: Array<{ name: string; team?: string; registered: boolean; instances: number }>;
  edges: Array<{ from: string; to: string; admitted: boolean }>;
}

/** Graphviz DOT: services as boxes (dashed when declared as a dependency but not registered); calls the mesh refuses dashed red. */
export function topologyDot(topology: Topology): string {
  const quote = (s: string) => JSON.stringify(s);
  const lines = ['digraph trellis {', '  rankdir=LR;', '  node [shape=box];'];
  for (const n of topology.nodes) {
    const label = `${n.name}\\n${n.team ?? 'unregistered'} · ${n.instances} instance${n.instances === 1 ? '' : 's'}`;
    lines.push(`  ${quote(n.name)} [label="${label}"${n.registered ? '' : ', style=dashed'}];`);
  }
  for (const e of topology.edges) lines.push(`  ${quote(e.from)} -> ${quote(e.to)}${e.admitted ? '' : ' [style=dashed, color=red]'};`);
  lines.push('}');
  return lines.join('\n') + '\n';
}

const columns: Column<Topology['nodes'][number] & { calls: string; callers: string }>[] = [
  { header: 'SERVICE', value: (n) => n.name },
  { header: 'TEAM', value: (n) => n.team ?? (n.registered ? '' : '(not registered)') },
  { header: 'INSTANCES', value: (n) => n.instances },
  { header: 'CALLS', value: (n) => n.calls },
  { header: 'CALLED BY', value: (n) => n.callers },
];

export function registerTopologyCommand(program: Command): void {
  program
    .command('topology')
    .description('the mesh topology: declared dependencies as edges (-o dot for Graphviz)')
    .addOption(outputOption(['dot']))
    .action(async (opts: { output: string }, cmd: Command) => {
      const topology = ok(await registryOf(cmd).GET('/api/v1/topology', {}), 'topology') as Topology;
      if (opts.output === 'dot') return void process.stdout.write(topologyDot(topology));
      const rows = topology.nodes.map((n) => ({
        ...n,
        calls: topology.edges
          .filter((e) => e.from === n.name)
          .map((e) => e.to)
          .join(','),
        callers: topology.edges
          .filter((e) => e.to === n.name)
          .map((e) => e.from)
          .join(','),
      }));
      print(opts.output, topology, rows, columns);
    });
}
