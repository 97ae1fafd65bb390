// The Helm charts under deploy/helm: values.schema.json accepts each chart's defaults
// (and rejects bad values), the templates are structurally sound and use only values
// that exist, and they set only TRELLIS_* variables the apps accept. `helm lint` and
// `helm template` run too where Helm is installed (deploy/README.md).
import Ajv from 'ajv';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
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

/** The parts of rendered manifests these tests look into. */
interface Container {
  name: string;
  env?: Array<{ name: string }>;
}
interface Manifest {
  kind: string;
  metadata: { name: string };
  spec: {
    template?: { spec: { containers: Container[]; initContainers?: Container[]; volumes?: unknown[] } };
    virtualhost?: { authorization?: unknown };
  };
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

  it("ci/all-features-values.yaml satisfies the umbrella's and every subchart's schema", () => {
    const umbrella = byPath.get('trellis')!;
    const values = parse(readFileSync(join(umbrella.dir, 'ci/all-features-values.yaml'), 'utf8')) as Record<string, object>;
    expect(errorsFor(umbrella, values)).toEqual([]);
    for (const { app, chart } of appCharts) {
      const section = { ...chart.values, ...values[app], global: { ...(chart.values['global'] as object), ...values['global'] } };
      expect({ app, errors: errorsFor(chart, section) }).toEqual({ app, errors: [] });
    }
  });

  // The real thing where Helm is installed (TRELLIS_HELM, or helm on PATH); deploy/README.md
  // shows the same commands. Rendering targets Kubernetes 1.30 (the charts need 1.27+).
  const helm = process.env['TRELLIS_HELM'] ?? spawnSync('sh', ['-c', 'command -v helm'], { encoding: 'utf8' }).stdout.trim();
  const withHelm = helm ? describe : describe.skip;
  withHelm('with Helm (skipped where it is not installed)', () => {
    const run = (args: string[]) => {
      const result = spawnSync(helm, args, { encoding: 'utf8' });
      return { ok: result.status === 0, stdout: result.stdout, output: `${result.stdout}${result.stderr}` };
    };
    const render = (args: string[]) => {
      const result = run(['template', 'trellis', '--kube-version', '1.30.0', ...args]);
      expect(result.ok ? 'ok' : result.output).toBe('ok');
      return parseAllDocuments(result.stdout)
        .map((doc) => {
          expect(doc.errors.map(String)).toEqual([]);
          return doc.toJS() as Manifest;
        })
        .filter(Boolean);
    };
    const kinds = (docs: Array<{ kind: string }>) => docs.map((d) => d.kind).sort();

    it.each(charts.filter((c) => c.meta.type !== 'library').map((c) => c.path))('helm lint --strict %s', (path) => {
      const result = run(['lint', '--strict', byPath.get(path)!.dir]);
      expect(result.ok ? 'ok' : result.output).toBe('ok');
    });

    it('the umbrella renders every app with its defaults', () => {
      expect(kinds(render([byPath.get('trellis')!.dir]))).toEqual([
        'Deployment',
        'Deployment',
        'Deployment',
        'PodDisruptionBudget',
        'PodDisruptionBudget',
        'PodDisruptionBudget',
        'Secret',
        'Secret',
        'Service',
        'Service',
        'Service',
        'ServiceAccount',
        'ServiceAccount',
        'ServiceAccount',
      ]);
    });

    it('every optional part renders, with etcd TLS and auth from global reaching each app', () => {
      const umbrella = byPath.get('trellis')!;
      const docs = render([umbrella.dir, '-f', join(umbrella.dir, 'ci/all-features-values.yaml')]);
      expect(new Set(kinds(docs))).toEqual(
        new Set([
          'Deployment',
          'ExtensionService',
          'HTTPProxy',
          'HorizontalPodAutoscaler',
          'PodDisruptionBudget',
          'Service',
          'ServiceAccount',
          'ServiceMonitor',
        ]),
      );
      for (const deployment of docs.filter((d) => d.kind === 'Deployment')) {
        const env = deployment.spec.template!.spec.containers[0]!.env ?? [];
        expect({
          name: deployment.metadata.name,
          env: env
            .map((e) => e.name)
            .filter((n) => n.startsWith('TRELLIS_ETCD_'))
            .sort(),
        }).toEqual({
          name: deployment.metadata.name,
          env: [
            'TRELLIS_ETCD_CA_FILE',
            'TRELLIS_ETCD_CERT_FILE',
            'TRELLIS_ETCD_ENDPOINTS',
            'TRELLIS_ETCD_KEY_FILE',
            'TRELLIS_ETCD_PASSWORD_FILE',
            'TRELLIS_ETCD_PREFIX',
            'TRELLIS_ETCD_USERNAME',
          ],
        });
      }
      const proxy = docs.find((d) => d.kind === 'HTTPProxy')!;
      expect(proxy.spec.virtualhost!.authorization).toMatchObject({
        extensionRef: { name: 'trellis-authz' },
        failOpen: false,
        authPolicy: { context: { 'trellis.direction': 'edge' } },
      });
    });

    it.each([
      ['native sidecar', [], ['trellis-bootstrap', 'envoy'], ['orders']],
      ['classic sidecar', ['--set', 'trellisSidecar.nativeSidecar=false'], ['trellis-bootstrap'], ['orders', 'envoy']],
    ])('a workload adopting trellis-sidecar renders a %s', (_name, args, initContainers, containers) => {
      const dir = mkdtempSync(join(tmpdir(), 'trellis-sidecar-consumer-'));
      try {
        cpSync(join(__dirname, '../fixtures/sidecar-consumer'), dir, { recursive: true });
        cpSync(byPath.get('trellis-sidecar')!.dir, join(dir, 'charts/trellis-sidecar'), { recursive: true });
        const [deployment] = render([dir, ...(args as string[])]);
        const pod = deployment!.spec.template!.spec;
        expect(pod.initContainers?.map((c) => c.name)).toEqual(initContainers);
        expect(pod.containers.map((c) => c.name)).toEqual(containers);
        expect(pod.volumes).toEqual([{ name: 'trellis-envoy-bootstrap', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } }]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
