// The alert rules and the Grafana dashboard the umbrella chart ships: promtool accepts the
// rules and their unit tests pass (each alert fires on what it is named for, not on a healthy
// mesh), every metric they name is one an app really exports, and the chart renders both.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { findHelm } from './helm-charts';
import { WORKSPACE_ROOT } from './workspace';

const CHART = join(WORKSPACE_ROOT, 'deploy/helm/trellis');
const RULES = join(CHART, 'files/prometheus-rules.yaml');
const DASHBOARD = join(CHART, 'files/grafana-dashboard.json');
const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));

interface RuleFile {
  groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string }> }>;
}
interface Dashboard {
  uid: string;
  panels: Array<{ id: number; type: string; title: string; targets?: Array<{ expr: string }> }>;
}

/** Every metric name an app, the agent or the runtime kit registers (name: '…' or `${P}…`). */
function exportedMetrics(): Set<string> {
  const names = new Set<string>();
  const files = [
    ...['registry', 'control-plane', 'authz'].map((app) => `apps/${app}/src/metrics.ts`),
    'apps/cli/src/agent/metrics.ts',
    'libs/runtime/src/metrics.ts',
  ];
  for (const file of files) {
    const source = readFileSync(join(WORKSPACE_ROOT, file), 'utf8');
    const prefix = /const P = '([a-z_]+)'/.exec(source)?.[1] ?? '';
    for (const m of source.matchAll(/name: (?:'([a-z_:]+)'|`\$\{P\}([a-z_]+)`)/g)) names.add(m[1] ?? `${prefix}${m[2]}`);
  }
  return names;
}

/** Metric names in a PromQL expression: identifiers followed by `{` or `[` or standing alone, minus functions and keywords. */
function metricsIn(expr: string): string[] {
  const withoutStrings = expr.replace(/"[^"]*"/g, '""');
  const words = [...withoutStrings.matchAll(/\b([a-z_:][a-z0-9_:]*)\b(?!\s*\()/g)].map((m) => m[1]!);
  const keywords = new Set(['by', 'without', 'and', 'or', 'unless', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset']);
  return [...new Set(words.filter((w) => w.includes('_') && !keywords.has(w)))].filter(
    (w) => /^(trellis|process|nodejs)_/.test(w) || /_(total|seconds|bucket|bytes)$/.test(w),
  );
}

/** A histogram's or counter's series names back to the metric that registers them. */
const baseName = (series: string) => series.replace(/_(bucket|sum|count)$/, '');

const rules = parse(readFileSync(RULES, 'utf8')) as RuleFile;
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const dashboardExprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));

describe('alert rules (deploy/helm/trellis/files/prometheus-rules.yaml)', () => {
  it('alert on NACKs, stale proxies, slow convergence, authz deny spikes, an open Redis breaker, an unreachable etcd, an expiring etcd client certificate, files that do not reload and secret files refused', () => {
    expect(rules.groups.flatMap((g) => g.rules.map((r) => r.alert))).toEqual([
      'TrellisXdsRejected',
      'TrellisProxiesStale',
      'TrellisConvergenceSlow',
      'TrellisControlPlaneTranslationFailing',
      'TrellisAuthzDenySpike',
      'TrellisAuthzRedisBreakerOpen',
      'TrellisEtcdUnreachable',
      'TrellisEtcdClientCertificateExpiring',
      'TrellisFilesReloadFailing',
      'TrellisSecretFilesRefused',
    ]);
  });

  it('name only metrics the apps export', () => {
    const exported = exportedMetrics();
    expect(exported).toContain('trellis_control_plane_xds_rejects_total');
    const used = rules.groups.flatMap((g) => g.rules.flatMap((r) => metricsIn(r.expr)));
    expect(used.length).toBeGreaterThan(8);
    expect(used.map(baseName).filter((m) => !exported.has(m))).toEqual([]);
  });

  if (!promtool && process.env['CI'])
    throw new Error('promtool is missing: install the Debian package prometheus (tools/setup/ensure-system-deps.mjs)');
  (promtool ? describe : describe.skip)('with promtool (Debian package prometheus)', () => {
    it('promtool check rules accepts them', () => {
      const checked = spawnSync(promtool!, ['check', 'rules', RULES], { encoding: 'utf8' });
      expect(checked.status === 0 ? 'ok' : checked.stdout + checked.stderr).toBe('ok');
    });

    it('promtool test rules: each alert fires on its situation and stays quiet otherwise', () => {
      const tests = join(__dirname, '../fixtures/prometheus-rules.test.yaml');
      const result = spawnSync(promtool!, ['test', 'rules', tests], { encoding: 'utf8' });
      expect(result.status === 0 ? 'ok' : result.stdout + result.stderr).toBe('ok');
    });

    it('the dashboard queries are valid PromQL (checked as recording rules)', () => {
      const dir = mkdtempSync(join(tmpdir(), 'trellis-dashboard-'));
      try {
        const asRules = {
          groups: [
            {
              name: 'dashboard',
              rules: dashboardExprs.map((expr, i) => ({
                record: `trellis:dashboard_query_${i}`,
                expr: expr.replaceAll('$__rate_interval', '5m').replaceAll('$namespace', '.*'),
              })),
            },
          ],
        };
        writeFileSync(join(dir, 'dashboard.rules.yaml'), stringify(asRules));
        const checked = spawnSync(promtool!, ['check', 'rules', join(dir, 'dashboard.rules.yaml')], { encoding: 'utf8' });
        expect(checked.status === 0 ? 'ok' : checked.stdout + checked.stderr).toBe('ok');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

describe('Grafana dashboard (deploy/helm/trellis/files/grafana-dashboard.json)', () => {
  it('has unique panel ids and a query in every graph', () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const withoutQueries = dashboard.panels.filter((p) => p.type !== 'row' && !p.targets?.length).map((p) => p.title);
    expect(withoutQueries).toEqual([]);
    expect(dashboardExprs.length).toBeGreaterThan(10);
  });

  it('graphs only metrics the apps export (and the standard process_* / nodejs_* ones)', () => {
    const exported = exportedMetrics();
    const used = [...new Set(dashboardExprs.flatMap(metricsIn))];
    const unknown = used.map(baseName).filter((m) => !exported.has(m) && !/^(process|nodejs)_/.test(m));
    expect(unknown).toEqual([]);
    expect(used).toEqual(expect.arrayContaining(['trellis_control_plane_xds_rejects_total', 'trellis_authz_checks_total']));
  });
});

describe('the umbrella chart renders them', () => {
  const helm = findHelm();
  (helm ? it : it.skip)('as a PrometheusRule holding the rule file and a ConfigMap holding the dashboard, both off by default', () => {
    const template = (...args: string[]) => {
      const result = spawnSync(
        helm!,
        ['template', 'trellis', CHART, '--kube-version', '1.30.0', '--set', 'authz.ca.existingSecret=mesh-ca', ...args],
        { encoding: 'utf8' },
      );
      expect(result.status === 0 ? 'ok' : result.stderr).toBe('ok');
      return parseAllDocuments(result.stdout).map(
        (d) => d.toJS() as { kind: string; metadata: { labels: Record<string, string> }; spec?: unknown; data?: Record<string, string> },
      );
    };
    expect(template().filter((d) => d.kind === 'PrometheusRule')).toEqual([]);
    const docs = template(
      '--set',
      'prometheusRule.enabled=true',
      '--set',
      'prometheusRule.additionalLabels.release=prom',
      '--set',
      'grafanaDashboard.enabled=true',
    );
    const rule = docs.find((d) => d.kind === 'PrometheusRule')!;
    expect(rule.metadata.labels).toMatchObject({ release: 'prom', 'app.kubernetes.io/part-of': 'trellis' });
    expect(rule.spec).toEqual(rules);
    const dashboardMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.labels['grafana_dashboard'] === '1')!;
    expect(JSON.parse(dashboardMap.data!['trellis-mesh.json']!)).toEqual(dashboard);
  });

  it('the chart packages the files (no .helmignore rule drops them)', () => {
    const ignore = readFileSync(join(CHART, '.helmignore'), 'utf8');
    expect(ignore).not.toMatch(/^files\/?$/m);
    expect(readdirSync(join(CHART, 'files')).sort()).toEqual(['grafana-dashboard.json', 'prometheus-rules.yaml']);
  });
});
