// Bundles the local-mesh tool (its main and the demo service) into dist/tools/local-mesh.
import { build } from 'esbuild';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');

export async function bundleLocalMesh() {
  const outDir = join(root, 'dist/tools/local-mesh');
  await build({
    entryPoints: { main: join(here, 'src/main.ts'), 'demo-service': join(here, 'src/demo/demo-service.ts') },
    outdir: outDir,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    sourcemap: true,
    packages: 'external',
    tsconfig: join(root, 'tsconfig.base.json'),
    logLevel: 'warning',
  });
  return outDir;
}
