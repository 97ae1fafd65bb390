#!/usr/bin/env node
// Chart READMEs from values.yaml, helm-docs style: every key with a `# -- description`
// comment above it, and every leaf, becomes a row (key, type, default, description) of the
// "Values" table in <chart>/README.md, between the markers below. `--check` writes nothing
// and fails when a README is not current (the deploy tests run it).
//
//   node tools/helm-docs/generate.mjs [--check] [chart-dir ...]   (default: every app chart and the umbrella)
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { isMap, isScalar, parseDocument } from 'yaml';

const ROOT = resolve(import.meta.dirname, '../..');
export const BEGIN = '<!-- values:begin (tools/helm-docs/generate.mjs; do not edit) -->';
export const END = '<!-- values:end -->';
export const CHARTS = ['deploy/helm/trellis', ...['registry', 'control-plane', 'authz'].map((a) => `deploy/helm/trellis/charts/${a}`)];

/** The `-- …` description in a comment block (continuation lines included), or undefined. */
function description(comment) {
  if (!comment) return undefined;
  const lines = comment.split('\n').map((l) => l.replace(/^ ?/, ''));
  const start = lines.findLastIndex((l) => l.startsWith('-- '));
  if (start < 0) return undefined;
  return lines
    .slice(start)
    .map((l, i) => (i === 0 ? l.slice(3) : l))
    .join(' ')
    .replace(/\s+/g, ' ')
    .trim();
}

function typeOf(value) {
  if (Array.isArray(value)) return 'list';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'object';
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float';
  return typeof value === 'boolean' ? 'bool' : 'string';
}

/** The comment after a node's last line: the parser hangs the next key's comment there when a map ends before it. */
function trailingComment(node) {
  if (!node) return undefined;
  const own = node.comment;
  const last = isMap(node) && node.items.length ? trailingComment(node.items.at(-1).value) : undefined;
  return [last, own].filter(Boolean).join('\n') || undefined;
}

/** One row per documented key and per leaf, in file order. */
export function valueRows(text) {
  const doc = parseDocument(text);
  const rows = [];
  const walk = (map, prefix, inherited) => {
    map.items.forEach((pair, i) => {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const path = prefix ? `${prefix}.${/^[A-Za-z0-9_]+$/.test(key) ? key : `"${key}"`}` : /^[A-Za-z0-9_-]+$/.test(key) ? key : `"${key}"`;
      // The first key's comment belongs to the map in the parser's view.
      const text = description(pair.key?.commentBefore) ?? (i === 0 ? inherited : description(trailingComment(map.items[i - 1].value)));
      const value = pair.value;
      const leaf = !isMap(value) || value.items.length === 0;
      if (text !== undefined || leaf) {
        const js = value?.toJSON?.() ?? (isScalar(value) ? value.value : (value ?? null));
        rows.push({ key: path, type: typeOf(js), default: JSON.stringify(js), description: text ?? '' });
      }
      if (!leaf) walk(value, path, description(value.commentBefore));
    });
  };
  if (isMap(doc.contents)) walk(doc.contents, '', description(doc.contents.commentBefore) ?? description(doc.commentBefore));
  return rows;
}

const cell = (s) => s.replace(/\|/g, '\\|');
// Outside code spans, <release> would read as an HTML tag.
const prose = (s) => cell(s).replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function valuesTable(text) {
  const rows = valueRows(text);
  return [
    '| Key | Type | Default | Description |',
    '| --- | --- | --- | --- |',
    ...rows.map((r) => `| \`${cell(r.key)}\` | ${r.type} | \`${cell(r.default)}\` | ${prose(r.description)} |`),
  ].join('\n');
}

/** The README with its values table replaced (or a new README when there is none). */
export function renderReadme(chartDir, current) {
  const chart = parseDocument(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')).toJSON();
  const table = `${BEGIN}\n\n${valuesTable(readFileSync(join(chartDir, 'values.yaml'), 'utf8'))}\n\n${END}`;
  if (current && current.includes(BEGIN) && current.includes(END))
    return current.slice(0, current.indexOf(BEGIN)) + table + current.slice(current.indexOf(END) + END.length);
  const intro =
    current ??
    `# ${chart.name}\n\n${chart.description ?? ''}\n\nInstalling and operating it: [deploy/README.md](${relative(chartDir, join(ROOT, 'deploy/README.md'))}).\n`;
  return `${intro.trimEnd()}\n\n## Values\n\n${table}\n`;
}

function main() {
  const args = process.argv.slice(2);
  const check = args.includes('--check');
  const dirs = args.filter((a) => a !== '--check');
  const stale = [];
  for (const dir of dirs.length ? dirs : CHARTS) {
    const chartDir = resolve(ROOT, dir);
    const path = join(chartDir, 'README.md');
    const current = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
    const next = renderReadme(chartDir, current);
    if (next === current) continue;
    if (check) stale.push(relative(ROOT, path));
    else {
      writeFileSync(path, next);
      process.stdout.write(`wrote ${relative(ROOT, path)}\n`);
    }
  }
  if (stale.length) {
    process.stderr.write(`not current (run node tools/helm-docs/generate.mjs): ${stale.join(', ')}\n`);
    process.exit(1);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) main();
