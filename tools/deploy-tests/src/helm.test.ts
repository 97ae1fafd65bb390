// The Helm charts under deploy/helm: values.schema.json accepts each chart's defaults
// (and rejects bad values), the templates are structurally sound and use only values
// that exist, and they set only TRELLIS_* variables the apps accept. `helm lint` and
// `helm template` run too where Helm is installed (deploy/README.md).
import Ajv from 'ajv';
import { spawnSync } from 'node:child_process';
import { appVariables, mentionedVariables } from './app-env';
import { findCharts, type Chart } from './helm-charts';
import { lintTemplates } from './helm-template-lint';
import { APPS, type AppName } from './workspace';

const charts = findCharts();
const byPath = new Map(charts.map((c) => [c.path, c]));
const appCharts = APPS.map((app) => ({ app, chart: byPath.get(`trellis/charts/${app}`)! }));

function validator(chart: Chart) {
  const ajv = new Ajv({ allErrors: true, strict: false });
  return ajv.compile(chart.schema!);
}

function errorsFor(chart: Chart, values: unknown): string[] {
  const validate = validator(chart);
  return validate(values) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`);
}

/** The keys of an app chart's values.yaml these tests look into. */
interface AppValues {
  [key: string]: unknown;
  replicaCount: number;
  logLevel: string;
  etcd: { endpoints: string[] };
  podSecurityContext: object;
  securityContext: object;
  livenessProbe: { httpGet?: object };
  readinessProbe: { httpGet?: object; grpc?: object };
}

const appValues = (chart: Chart) => chart.values as AppValues;

const withChange = (chart: Chart, change: (copy: AppValues) => void) => {
  const copy = structuredClone(appValues(chart));
  change(copy);
  return copy;
};

describe('Helm charts', () => {
  it('has the umbrella chart, one subchart per app and the sidecar library', () => {
    expect(charts.map((c) => c.path).sort()).toEqual([
      'trellis',
      'trellis-sidecar',
      'trellis/charts/authz',
      'trellis/charts/control-plane',
      'trellis/charts/registry',
    ]);
  });

  it.each(charts.filter((c) => c.meta.type !== 'library').map((c) => [c.path, c] as const))(
    '%s: values.schema.json validates the default values',
    (_path, chart) => {
      expect(chart.schema).toBeDefined();
      expect(errorsFor(chart, chart.values)).toEqual([]);
    },
  );

  describe.each(appCharts)('$app chart', ({ app, chart }) => {
    it('rejects bad values with the schema', () => {
      expect(
        errorsFor(
          chart,
          withChange(chart, (v) => (v.replicaCount = -1)),
        ),
      ).toEqual(['/replicaCount must be >= 0']);
      expect(
        errorsFor(
          chart,
          withChange(chart, (v) => (v.replicas = 3)),
        ),
      ).toEqual(['/ must NOT have additional properties']);
      expect(
        errorsFor(
          chart,
          withChange(chart, (v) => (v.etcd.endpoints = ['etcd:2379'])),
        ),
      ).toEqual([expect.stringMatching(/^\/etcd\/endpoints\/0 must match pattern/)]);
      expect(
        errorsFor(
          chart,
          withChange(chart, (v) => (v.logLevel = 'verbose')),
        ),
      ).toEqual(['/logLevel must be equal to one of the allowed values']);
    });

    it('templates are balanced and use only values that exist', () => {
      expect(lintTemplates(chart.templates, chart.values)).toEqual([]);
    });

    it('sets only environment variables the app accepts', () => {
      const known = appVariables(app as AppName);
      const text = Object.values(chart.templates).join('\n');
      expect([...mentionedVariables(text)].filter((v) => !known.has(v))).toEqual([]);
      expect(text).toContain('TRELLIS_ETCD_ENDPOINTS');
    });

    it('runs restricted: non-root, read-only root file system, no privilege escalation, /tmp as emptyDir', () => {
      const values = appValues(chart);
      expect(values.podSecurityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
      expect(values.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(chart.templates['deployment.yaml']).toMatch(/mountPath: \/tmp/);
    });

    it('probes the health endpoints and has PDB, HPA and ServiceMonitor behind switches', () => {
      const values = appValues(chart);
      expect(values.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
      expect(values.readinessProbe.httpGet ?? values.readinessProbe.grpc).toBeDefined();
      for (const [file, toggle] of [
        ['pdb.yaml', 'podDisruptionBudget'],
        ['hpa.yaml', 'autoscaling'],
        ['servicemonitor.yaml', 'serviceMonitor'],
      ] as const) {
        expect(chart.templates[file]).toMatch(new RegExp(`^\\{\\{- if \\.Values\\.${toggle}\\.enabled -\\}\\}`));
      }
    });
  });

  it("the umbrella enables each subchart independently and its sections satisfy the subcharts' schemas", () => {
    const umbrella = byPath.get('trellis')!;
    expect(umbrella.meta.dependencies?.map((d) => [d.name, d.condition])).toEqual(APPS.map((app) => [app, `${app}.enabled`]));
    for (const { app, chart } of appCharts) {
      const section = { ...(umbrella.values[app] as object), global: umbrella.values['global'] };
      expect({ app, errors: errorsFor(chart, section) }).toEqual({ app, errors: [] });
    }
  });

  it('the sidecar library defines the templates its README tells workloads to include', () => {
    const library = byPath.get('trellis-sidecar')!;
    expect(library.meta.type).toBe('library');
    expect(lintTemplates(library.templates, {})).toEqual([]);
    const defined = Object.values(library.templates).join('\n');
    for (const name of ['trellis-sidecar.initContainers', 'trellis-sidecar.containers', 'trellis-sidecar.volumes'])
      expect(defined).toContain(`define "${name}"`);
  });

  const helm = spawnSync('sh', ['-c', 'command -v helm'], { encoding: 'utf8' }).stdout.trim();
  (helm ? it : it.skip)('helm lint and helm template pass (only where Helm is installed)', () => {
    for (const chart of charts.filter((c) => c.meta.type !== 'library')) {
      const lint = spawnSync(helm, ['lint', '--strict', chart.dir], { encoding: 'utf8' });
      expect({ chart: chart.path, output: lint.status === 0 ? 'ok' : lint.stdout + lint.stderr }).toEqual({
        chart: chart.path,
        output: 'ok',
      });
      const render = spawnSync(helm, ['template', 'trellis', chart.dir], { encoding: 'utf8' });
      expect({ chart: chart.path, output: render.status === 0 ? 'ok' : render.stderr }).toEqual({ chart: chart.path, output: 'ok' });
    }
  });
});
