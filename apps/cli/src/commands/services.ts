// `trellis services ls|get|history|rollback`.
import type { Command } from 'commander';
import { ok, type HistoryEntry, type Service } from '../registry/registry-client';
import { age, outputOption, print, type Column } from '../output';
import { registryOf } from './clients';

export const serviceColumns: Column<Service>[] = [
  { header: 'NAME', value: (s) => s.spec.name },
  { header: 'TEAM', value: (s) => s.spec.team },
  { header: 'PROTOCOL', value: (s) => s.spec.protocol },
  { header: 'PORT', value: (s) => s.spec.port },
  { header: 'MTLS', value: (s) => s.spec.mtls ?? 'off' },
  { header: 'CALLS', value: (s) => (s.spec.dependencies ?? []).map((d) => d.service).join(',') },
  { header: 'GENERATION', value: (s) => s.generation },
  { header: 'UPDATED', value: (s) => `${age(s.updated.at)} by ${s.updated.actor}` },
];

const historyColumns: Column<HistoryEntry>[] = [
  { header: 'GENERATION', value: (h) => h.generation },
  { header: 'ACTION', value: (h) => (h.restoredGeneration ? `${h.action} (to ${h.restoredGeneration})` : h.action) },
  { header: 'ACTOR', value: (h) => h.actor },
  { header: 'AT', value: (h) => h.at },
  { header: 'AGE', value: (h) => age(h.at) },
];

export function registerServicesCommand(program: Command): void {
  const services = program.command('services').alias('svc').description('services declared in the registry');

  services
    .command('ls')
    .description('list services, sorted by name')
    .option('--team <team>', 'only this team')
    .option('--calls <service>', 'only services that call this one')
    .addOption(outputOption())
    .action(async (opts: { team?: string; calls?: string; output: string }, cmd: Command) => {
      const query = { ...(opts.team ? { team: opts.team } : {}), ...(opts.calls ? { dependsOn: opts.calls } : {}) };
      const list = ok(await registryOf(cmd).GET('/api/v1/services', { params: { query } }), 'list services');
      print(opts.output, list.items, list.items, serviceColumns);
    });

  services
    .command('get')
    .description('one service (-o yaml shows its whole definition)')
    .argument('<name>')
    .addOption(outputOption())
    .action(async (name: string, opts: { output: string }, cmd: Command) => {
      const service = ok(await registryOf(cmd).GET('/api/v1/services/{name}', { params: { path: { name } } }), `get ${name}`);
      print(opts.output, service, [service], serviceColumns);
    });

  services
    .command('history')
    .description('every change to a service, newest first')
    .argument('<name>')
    .addOption(outputOption())
    .action(async (name: string, opts: { output: string }, cmd: Command) => {
      const history = ok(
        await registryOf(cmd).GET('/api/v1/services/{name}/history', { params: { path: { name } } }),
        `history of ${name}`,
      );
      print(opts.output, history.items, history.items, historyColumns);
    });

  services
    .command('rollback')
    .description("restore a previous generation's definition as a new generation (needs a token)")
    .argument('<name>')
    .requiredOption('--to <generation>', 'the generation to restore')
    .addOption(outputOption())
    .action(async (name: string, opts: { to: string; output: string }, cmd: Command) => {
      const registry = registryOf(cmd);
      const current = await registry.GET('/api/v1/services/{name}', { params: { path: { name } } });
      // A deleted service has no ETag: the rollback brings it back.
      const etag = current.data ? (current.response.headers.get('etag') ?? undefined) : undefined;
      const restored = ok(
        await registry.POST('/api/v1/services/{name}/rollback', {
          params: { path: { name }, header: etag ? { 'If-Match': etag } : {} },
          body: { generation: Number(opts.to) },
        }),
        `roll back ${name}`,
      );
      print(opts.output, restored, [restored], serviceColumns);
    });
}
