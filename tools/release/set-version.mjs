#!/usr/bin/env node
// Sets the one Trellis version everywhere it is written (tools/release/versions.mjs):
//   node tools/release/set-version.mjs 0.2.0 [--root <checkout>]
// Then add a `## [0.2.0] - <date>` section to CHANGELOG.md, commit, and run release.mjs.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { setVersion, versionMismatches } from './versions.mjs';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { root: { type: 'string' } } });
const root = resolve(values.root ?? resolve(import.meta.dirname, '../..'));
const [version] = positionals;
if (!version) {
  console.error('usage: set-version.mjs <version> [--root <checkout>]');
  process.exit(2);
}
try {
  setVersion(root, version);
  const left = versionMismatches(root, version);
  if (left.length) throw new Error(left.join('\n'));
  console.log(`version ${version} set; add its CHANGELOG.md section, then commit`);
} catch (error) {
  console.error(`set-version: ${error.message}`);
  process.exit(1);
}
