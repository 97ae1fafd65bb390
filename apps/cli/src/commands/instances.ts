// `trellis instances ls SERVICE`.
import type { Command } from 'commander';
import { ok, type Instance } from '../registry/registry-client';
import { age, outputOption, print, type Column } from '../output';
import { registryOf } from './clients';

const columns: Column<Instance>[] = [
  { header: 'ID', value: (i) => i.id },
  { header: 'ADDRESS', value: (i) => `${i.address}:${i.port}` },
  { header: 'STATE', value: (i) => (i.drainingSince ? 'draining' : 'serving') },
  { header: 'LOCALITY', value: (i) => [i.locality?.region, i.locality?.zone, i.locality?.subZone].filter(Boolean).join('/') },
  { header: 'PLATFORM', value: (i) => i.platform },
  { header: 'WEIGHT', value: (i) => i.weight },
  { header: 'AGE', value: (i) => age(i.registeredAt) },
  {
    header: 'LABELS',
    value: (i) =>
      Object.entries(i.labels ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
  },
];

export function registerInstancesCommand(program: Command): void {
  const instances = program.command('instances').description('live instances (each bound to an etcd lease)');
  instances
    .command('ls')
    .description("a service's live instances; draining ones get no new calls")
    .argument('<service>')
    .addOption(outputOption())
    .action(async (service: string, opts: { output: string }, cmd: Command) => {
      const list = ok(
        await registryOf(cmd).GET('/api/v1/services/{name}/instances', { params: { path: { name: service } } }),
        `instances of ${service}`,
      );
      print(opts.output, list.items, list.items, columns);
    });
}
