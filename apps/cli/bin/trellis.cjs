#!/usr/bin/env node
// `npx trellis …` inside the workspace: runs the built CLI (`npx nx build cli`).
// Elsewhere the bundle runs as is: `node dist/apps/cli/main.js …`.
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const main = join(__dirname, '../../../dist/apps/cli/main.js');
if (!existsSync(main)) {
  process.stderr.write('trellis: dist/apps/cli/main.js is missing; build it with `npx nx build cli`\n');
  process.exit(2);
}
require(main);
