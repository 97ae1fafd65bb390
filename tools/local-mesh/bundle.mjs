// Bundles the local-mesh tool (its main, the demo service, the agent suite's fixtures) into dist/tools/local-mesh.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildNodeBundle, WORKSPACE_ROOT } from '../build/node-bundle.mjs';

const here = dirname(fileURLToPath(import.meta.url));

export async function bundleLocalMesh() {
  const outdir = join(WORKSPACE_ROOT, 'dist/tools/local-mesh');
  await buildNodeBundle({
    entryPoints: {
      main: join(here, 'src/main.ts'),
      'demo-service': join(here, 'src/demo/demo-service.ts'),
      // The agent end-to-end suite's plain app and proxyless caller.
      'plain-app': join(here, 'src/agent-e2e/plain-app.ts'),
      'proxyless-caller': join(here, 'src/agent-e2e/proxyless-caller.ts'),
      // The fault suite's steady meshed traffic.
      'load-caller': join(here, 'src/faults/load-caller.ts'),
    },
    outdir,
  });
  return outdir;
}

// Run directly (the end-to-end suite does): bundle and print the folder.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(await bundleLocalMesh());
}
