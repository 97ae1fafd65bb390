// `trellis apply -f FILE|DIR [--dry-run]`: see apply/apply.ts.
import { Option, type Command } from 'commander';
import { applyManifest, loadManifests, type ApplyResult } from '../apply/apply';
import { CliError, print, type Column } from '../output';
import { registryOf } from './clients';

const columns: Column<ApplyResult>[] = [
  { header: 'SERVICE', value: (r) => r.name },
  { header: 'RESULT', value: (r) => r.action },
  { header: 'FILE', value: (r) => r.file },
];

export function registerApplyCommand(program: Command): void {
  program
    .command('apply')
    .description(
      'make the registry hold the service definitions in YAML files (one ServiceSpec per document): creates, replaces with If-Match (retried on conflicts), leaves equal ones alone',
    )
    .requiredOption('-f, --filename <path>', 'a YAML file or a directory of them (searched recursively)')
    .option('--dry-run', 'print what would change, as a diff per service, and change nothing')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .action(async (opts: { filename: string; dryRun?: boolean; output: string }, cmd: Command) => {
      const manifests = await loadManifests(opts.filename).catch((err: Error) => {
        throw new CliError(err.message, 2);
      });
      const registry = registryOf(cmd);
      const results: ApplyResult[] = [];
      for (const manifest of manifests) results.push(await applyManifest(registry, manifest, opts.dryRun ?? false));

      if (opts.output !== 'table') return print(opts.output, results, results, columns);
      for (const r of results) {
        const verb = opts.dryRun && r.action !== 'unchanged' ? `would be ${r.action}` : r.action;
        process.stdout.write(`service/${r.name} ${verb}\n`);
        if (opts.dryRun && r.action !== 'unchanged') process.stdout.write(r.diff.map((l) => `    ${l}`).join('\n') + '\n');
      }
      const count = (a: string) => results.filter((r) => r.action === a).length;
      const changed = count('created') + count('configured');
      process.stdout.write(
        changed === 0
          ? `no changes: ${results.length} service${results.length === 1 ? '' : 's'} already as declared\n`
          : `${count('created')} ${opts.dryRun ? 'to create' : 'created'}, ${count('configured')} ${opts.dryRun ? 'to change' : 'changed'}, ${count('unchanged')} unchanged\n`,
      );
    });
}
