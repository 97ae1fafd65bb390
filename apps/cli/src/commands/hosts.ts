// `trellis hosts ls|assign`: which team owns each ingress host (GET/PUT /api/v1/hosts).
import type { Command } from 'commander';
import { Option } from 'commander';
import { ok, type HostClaim } from '../registry/registry-client';
import { age, outputOption, print, type Column } from '../output';
import { registryOf } from './clients';

const columns: Column<HostClaim>[] = [
  { header: 'HOST', value: (h) => h.host },
  { header: 'TEAM', value: (h) => h.team },
  // "assigned": an admin gave it to the team; otherwise the first service that declared it fixed the team.
  { header: 'HOW', value: (h) => (h.assigned ? 'assigned' : 'first claim') },
  { header: 'BY', value: (h) => h.claimedBy },
  { header: 'AGE', value: (h) => age(h.at) },
];

export function registerHostsCommand(program: Command): void {
  const hosts = program.command('hosts').description('ingress hosts and the team that owns each');
  hosts
    .command('ls')
    .description('every ingress host a service declared, with its owning team')
    .addOption(outputOption())
    .action(async (opts: { output: string }, cmd: Command) => {
      const list = ok(await registryOf(cmd).GET('/api/v1/hosts'), 'hosts');
      const items = [...list.items].sort((a, b) => a.host.localeCompare(b.host));
      print(opts.output, items, items, columns);
    });
  hosts
    .command('assign')
    .description("give an ingress host to a team (admin token): another team's services may then declare it")
    .argument('<host>')
    .addOption(new Option('--team <team>', 'the team that owns the host from now on').makeOptionMandatory())
    .addOption(outputOption())
    .action(async (host: string, opts: { team: string; output: string }, cmd: Command) => {
      const claim = ok(
        await registryOf(cmd).PUT('/api/v1/hosts/{host}', { params: { path: { host } }, body: { team: opts.team } }),
        `assign ${host}`,
      );
      print(opts.output, claim, [claim], columns);
    });
}
