// `trellis`: the node agent and the operator's view of the mesh, one executable.
import { buildProgram } from './program';
import { CliError } from './output';

const program = buildProgram();

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`trellis: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof CliError ? err.exitCode : 1);
});
