// The charts' READMEs carry a values table generated from values.yaml (helm-docs style) by
// tools/helm-docs/generate.mjs; this fails when one is not current.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WORKSPACE_ROOT } from './workspace';

const GENERATOR = join(WORKSPACE_ROOT, 'tools/helm-docs/generate.mjs');
const generator = () =>
  import(GENERATOR) as Promise<{
    CHARTS: string[];
    valueRows: (text: string) => Array<{ key: string; type: string; default: string; description: string }>;
  }>;

describe('chart READMEs generated from values.yaml', () => {
  it('are current (node tools/helm-docs/generate.mjs --check)', () => {
    const result = spawnSync(process.execPath, [GENERATOR, '--check'], { encoding: 'utf8' });
    expect(result.status === 0 ? 'ok' : result.stderr).toBe('ok');
  });

  it('list every documented value of every chart with its default', async () => {
    const { CHARTS, valueRows } = await generator();
    expect(CHARTS).toHaveLength(4);
    for (const chart of CHARTS) {
      const values = readFileSync(join(WORKSPACE_ROOT, chart, 'values.yaml'), 'utf8');
      const readme = readFileSync(join(WORKSPACE_ROOT, chart, 'README.md'), 'utf8');
      const documented = (values.match(/^\s*# -- /gm) ?? []).length;
      const rows = valueRows(values);
      expect({ chart, described: rows.filter((r) => r.description).length }).toEqual({ chart, described: documented });
      for (const row of rows) expect(readme).toContain(`| \`${row.key.replace(/\|/g, '\\|')}\` |`);
    }
  });

  it('reads helm-docs comments: descriptions over several lines, the first key of a map, undocumented leaves', async () => {
    const { valueRows } = await generator();
    const rows = valueRows(
      [
        '# -- Replicas when',
        '# autoscaling is off.',
        'replicaCount: 2',
        'service:',
        '  # -- Service type.',
        '  type: ClusterIP',
        '  port: 8080',
        '# a plain comment, not a description',
        'podLabels: {}',
        '# -- Extra env.',
        'extraEnv: [{ name: A, value: b }]',
      ].join('\n'),
    );
    expect(rows).toEqual([
      { key: 'replicaCount', type: 'int', default: '2', description: 'Replicas when autoscaling is off.' },
      { key: 'service.type', type: 'string', default: '"ClusterIP"', description: 'Service type.' },
      { key: 'service.port', type: 'int', default: '8080', description: '' },
      { key: 'podLabels', type: 'object', default: '{}', description: '' },
      { key: 'extraEnv', type: 'list', default: '[{"name":"A","value":"b"}]', description: 'Extra env.' },
    ]);
  });

  it('--check notices a values.yaml changed without regenerating', () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-helm-docs-'));
    try {
      cpSync(join(WORKSPACE_ROOT, 'deploy/helm/trellis/charts/registry'), dir, { recursive: true });
      writeFileSync(join(dir, 'values.yaml'), `${readFileSync(join(dir, 'values.yaml'), 'utf8')}\n# -- A new knob.\nnewKnob: 1\n`);
      const stale = spawnSync(process.execPath, [GENERATOR, '--check', dir], { encoding: 'utf8' });
      expect(stale.status).toBe(1);
      expect(stale.stderr).toMatch(/not current/);
      expect(spawnSync(process.execPath, [GENERATOR, dir], { encoding: 'utf8' }).status).toBe(0);
      expect(readFileSync(join(dir, 'README.md'), 'utf8')).toContain('| `newKnob` | int | `1` | A new knob. |');
      expect(spawnSync(process.execPath, [GENERATOR, '--check', dir], { encoding: 'utf8' }).status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
