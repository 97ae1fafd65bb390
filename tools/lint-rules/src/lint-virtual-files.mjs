#!/usr/bin/env node
// Lints source texts as if they were files at the given workspace paths (the files
// need not exist), with the workspace's own eslint.config.mjs. Reads
// [{ filePath, code }] as JSON on stdin, writes [{ filePath, messages: [{ ruleId, message }] }].
// A separate process because ESLint loads its ESM config with import(), which jest's
// module system does not provide.
import { createProjectGraphAsync } from '@nx/devkit';
import { ESLint } from 'eslint';
import { text } from 'node:stream/consumers';

const RESULTS_MARKER = '\n--- lint results ---\n';

const files = JSON.parse(await text(process.stdin));
// The boundary rule reads nx's cached project graph (tags come from project.json): refresh it first.
await createProjectGraphAsync({ exitOnError: true });
const eslint = new ESLint({ cwd: process.cwd() });
const results = [];
for (const { filePath, code } of files) {
  const [result] = await eslint.lintText(code, { filePath });
  results.push({ filePath, messages: (result?.messages ?? []).map(({ ruleId, message }) => ({ ruleId, message })) });
}
// After a marker: the boundary rule may print warnings to stdout.
process.stdout.write(RESULTS_MARKER + JSON.stringify(results));
