// The `trellis` command tree, apart from main.ts so tests can run commands in-process.
import { Command, Option } from 'commander';
import { registerAgentCommand } from './commands/agent';
import { registerApplyCommand } from './commands/apply';
import { registerBootstrapCommand } from './commands/bootstrap';
import { registerConfigDumpCommand } from './commands/config-dump';
import { registerHostsCommand } from './commands/hosts';
import { registerInstancesCommand } from './commands/instances';
import { registerProxyStatusCommand } from './commands/proxy-status';
import { registerServicesCommand } from './commands/services';
import { registerTopologyCommand } from './commands/topology';

export function buildProgram(): Command {
  const program = new Command('trellis')
    .description('Trellis service mesh: run the node agent beside an instance, inspect and change the mesh')
    .version('0.1.0')
    .addOption(new Option('--registry <url>', 'registry URL').env('TRELLIS_REGISTRY_URL'))
    .addOption(new Option('--control-plane <url>', "control plane's HTTP URL").env('TRELLIS_CONTROL_PLANE_URL'))
    .addOption(new Option('--token <token>', 'bearer token for registry writes (admin or team)').env('TRELLIS_TOKEN'))
    .addOption(
      new Option('--context <name>', 'context of the config file (TRELLIS_CONFIG, ~/.config/trellis/config.yaml)').env('TRELLIS_CONTEXT'),
    )
    .showHelpAfterError()
    .configureHelp({ showGlobalOptions: true });

  registerServicesCommand(program);
  registerApplyCommand(program);
  registerInstancesCommand(program);
  registerHostsCommand(program);
  registerProxyStatusCommand(program);
  registerConfigDumpCommand(program);
  registerTopologyCommand(program);
  registerBootstrapCommand(program);
  registerAgentCommand(program);
  return program;
}
