// `trellis config-dump NODE` and `trellis bootstrap`'s neighbours on the control plane's HTTP side.
import type { Command } from 'commander';
import { outputOption, print, type Column } from '../output';
import { controlPlaneGet } from './clients';

interface ConfigDump {
  nodeId?: string;
  types: Record<string, { version: string; resources: Array<{ '@type'?: string; name?: string; clusterName?: string }> }>;
}

interface ResourceRow {
  type: string;
  version: string;
  name: string;
}

const columns: Column<ResourceRow>[] = [
  { header: 'TYPE', value: (r) => r.type },
  { header: 'NAME', value: (r) => r.name },
  { header: 'VERSION', value: (r) => r.version },
];

export function registerConfigDumpCommand(program: Command): void {
  program
    .command('config-dump')
    .description('what the control plane serves one connected proxy (its node id): every resource, decoded')
    .argument('<node>', 'node id (an instance id)')
    .addOption(outputOption())
    .action(async (node: string, opts: { output: string }, cmd: Command) => {
      const dump = (await controlPlaneGet(cmd, `/debug/config_dump?node=${encodeURIComponent(node)}`)) as ConfigDump;
      const rows = Object.entries(dump.types ?? {}).flatMap(([type, t]) =>
        t.resources.map((r) => ({ type: type.toUpperCase(), version: t.version, name: r.name ?? r.clusterName ?? '' })),
      );
      print(opts.output, dump, rows, columns);
    });
}
