#!/usr/bin/env node
// `nx run registry:openapi`: writes the registry's OpenAPI document, built in code by
// apps/registry/src/openapi.ts, to dist/apps/registry/openapi.json without starting a
// registry. The CLI's typed client is generated from this file (cli:generate).
import { build } from 'esbuild';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { writeFileAtomically } from './atomic-write.mjs';
import { nodeBundleOptions, WORKSPACE_ROOT as root } from './node-bundle.mjs';

// Inside the workspace, so the bundle's npm imports resolve from node_modules.
mkdirSync(join(root, 'tmp'), { recursive: true });
const scratch = mkdtempSync(join(root, 'tmp', 'openapi-'));
try {
  const bundle = join(scratch, 'openapi.cjs');
  await build(nodeBundleOptions({ entryPoints: [join(root, 'apps/registry/src/openapi.ts')], outfile: bundle, sourcemap: false }));
  const { buildOpenApiDocument } = createRequire(import.meta.url)(bundle);
  const outDir = join(root, 'dist/apps/registry');
  writeFileAtomically(join(outDir, 'openapi.json'), JSON.stringify(buildOpenApiDocument(), null, 2) + '\n');
  console.log('wrote dist/apps/registry/openapi.json');
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
