// The mesh model as Graphviz DOT (who calls whom), for a debug endpoint:
// `curl …/debug/model.dot | dot -Tsvg`. Pure and sorted, like the model.
import type { MeshModel } from './mesh-model';

/** A DOT string; `\n` inside stays a DOT line break. Names are DNS labels, so only quotes need escaping. */
function quote(text: string): string {
  return `"${text.replace(/"/g, '\\"')}"`;
}

export function meshModelToDot(model: MeshModel): string {
  const lines = [
    `digraph mesh {`,
    `  label=${quote(`trellis mesh @ revision ${model.revision}`)};`,
    '  rankdir=LR;',
    '  node [shape=box, fontname="sans-serif"];',
  ];
  for (const s of model.services.values()) {
    const endpoints = s.localities.reduce((n, l) => n + l.endpoints.length, 0);
    const split = s.upstreams.some((u) => u.subset !== undefined)
      ? `\\nsplit ${s.upstreams.map((u) => `${u.subset}=${u.weight}`).join(' ')}`
      : '';
    const attrs = [`label=${quote(`${s.name}\\n${s.protocol}:${s.port} · ${endpoints} endpoint${endpoints === 1 ? '' : 's'}${split}`)}`];
    if (s.ingress) attrs.push('peripheries=2');
    if (endpoints === 0) attrs.push('style=dashed');
    lines.push(`  ${quote(s.name)} [${attrs.join(', ')}];`);
  }
  for (const s of model.services.values()) {
    for (const d of s.dependencies) lines.push(`  ${quote(s.name)} -> ${quote(d.service)}${d.override ? ' [style=bold]' : ''};`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
