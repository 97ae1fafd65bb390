// How every benchmark starts: bundle its TypeScript entry (src/<name>.ts, which imports the
// apps' start functions and the test harness) with the apps' esbuild settings, then run it
// with the caller's arguments and exit with its status.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { appWorkerEntryPoints, buildNodeBundle, WORKSPACE_ROOT } from '../build/node-bundle.mjs';

const here = dirname(fileURLToPath(import.meta.url));

export async function runBundled(name) {
  // Each benchmark in its own folder: the smoke tests run at once under `npm test`, and one rebuilding a
  // shared check.worker.js while another's authz starts its Check worker made that start read a half-written file.
  const outfile = join(WORKSPACE_ROOT, `dist/tools/bench/${name}/${name}.js`);
  await buildNodeBundle({ entryPoints: [join(here, `src/${name}.ts`)], outfile });
  // The apps' worker-thread scripts beside it: the apps started in-process look for them next to their bundle.
  await buildNodeBundle({ entryPoints: appWorkerEntryPoints('authz'), outdir: dirname(outfile) });
  const { status } = spawnSync(process.execPath, ['--enable-source-maps', outfile, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(status ?? 1);
}
