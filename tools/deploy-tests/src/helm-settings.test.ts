// The app settings each Helm chart carries as typed values (limits on the wire, xDS stream limits, proxy
// status, endpoint retention, the Check worker): each value reaches its variable in the container, the
// chart's defaults are the app's own (read back with the app's config loader), and a value the app would
// refuse is refused by values.schema.json — by Ajv here and by `helm template` itself.
import Ajv from 'ajv';
import { spawnSync } from 'node:child_process';
import { parseAllDocuments } from 'yaml';
import { loadAppConfig } from './app-env';
import { findCharts, findHelm, type Chart } from './helm-charts';
import type { AppName } from './workspace';

interface Setting {
  /** The value's path in the app chart's values. */
  value: string;
  variable: string;
  /** A value other than the default, as `--set-json` takes it, and the variable it must become. */
  set: string;
  becomes: string;
  /** Values the app refuses (out of its bounds), as `--set-json` takes them. */
  bad: string[];
}

const HTTP: Setting[] = [
  {
    value: 'limits.http.headersTimeoutMs',
    variable: 'TRELLIS_HTTP_HEADERS_TIMEOUT_MS',
    set: '5000',
    becomes: '5000',
    bad: ['999', '120001'],
  },
  {
    value: 'limits.http.requestTimeoutMs',
    variable: 'TRELLIS_HTTP_REQUEST_TIMEOUT_MS',
    set: '60000',
    becomes: '60000',
    bad: ['0', '600001'],
  },
];
const TLS_AND_GRPC: Setting[] = [
  {
    value: 'limits.tls.handshakeTimeoutMs',
    variable: 'TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS',
    set: '3000',
    becomes: '3000',
    bad: ['500', '"10s"'],
  },
  { value: 'limits.tls.http2PrefaceTimeoutMs', variable: 'TRELLIS_HTTP2_PREFACE_TIMEOUT_MS', set: '4000', becomes: '4000', bad: ['999'] },
  {
    value: 'limits.tls.maxPendingConnections',
    variable: 'TRELLIS_TLS_MAX_PENDING_CONNECTIONS',
    set: '250',
    becomes: '250',
    bad: ['0', '1.5'],
  },
  // 0 turns a limit off; between 0 and 1000 would close connections between calls.
  { value: 'limits.grpc.maxConnectionIdleMs', variable: 'TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS', set: '0', becomes: '0', bad: ['500', '-1'] },
  // A large whole number reaches the app as digits, not as 8.64e+07.
  {
    value: 'limits.grpc.maxConnectionAgeMs',
    variable: 'TRELLIS_GRPC_MAX_CONNECTION_AGE_MS',
    set: '86400000',
    becomes: '86400000',
    bad: ['999', '86400001'],
  },
  {
    value: 'limits.grpc.maxConnectionAgeGraceMs',
    variable: 'TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS',
    set: '0',
    becomes: '0',
    bad: ['3600001'],
  },
];

const SETTINGS: Record<AppName, Setting[]> = {
  registry: HTTP,
  'control-plane': [
    ...HTTP,
    ...TLS_AND_GRPC,
    {
      value: 'xds.maxStreamsPerConnection',
      variable: 'TRELLIS_XDS_MAX_STREAMS_PER_CONNECTION',
      set: '32',
      becomes: '32',
      bad: ['0', '1001'],
    },
    { value: 'xds.firstRequestTimeoutMs', variable: 'TRELLIS_XDS_FIRST_REQUEST_TIMEOUT_MS', set: '2000', becomes: '2000', bad: ['99'] },
    { value: 'xds.fanoutSliceMs', variable: 'TRELLIS_XDS_FANOUT_SLICE_MS', set: '0', becomes: '0', bad: ['10001'] },
    { value: 'proxyStatus.maxDeferMs', variable: 'TRELLIS_PROXY_STATUS_MAX_DEFER_MS', set: '0', becomes: '0', bad: ['600001', '-1'] },
    { value: 'endpointRetention.seconds', variable: 'TRELLIS_ENDPOINT_RETENTION_SECONDS', set: '0', becomes: '0', bad: ['3601'] },
    { value: 'endpointRetention.share', variable: 'TRELLIS_ENDPOINT_RETENTION_SHARE', set: '0.25', becomes: '0.25', bad: ['1.5'] },
    {
      value: 'endpointRetention.windowMs',
      variable: 'TRELLIS_ENDPOINT_RETENTION_WINDOW_MS',
      set: '30000',
      becomes: '30000',
      bad: ['600001'],
    },
  ],
  authz: [
    ...HTTP,
    ...TLS_AND_GRPC,
    { value: 'checkWorker', variable: 'TRELLIS_CHECK_WORKER', set: 'false', becomes: 'false', bad: ['"maybe"'] },
  ],
};

const charts = new Map(findCharts().map((c) => [c.path, c]));
const chartOf = (app: AppName) => charts.get(`trellis/charts/${app}`)!;
// authz has no default mesh CA (the operator's PKI supplies it): every render names one.
const required = (app: AppName) => (app === 'authz' ? ['--set', 'ca.existingSecret=mesh-ca'] : []);
const apps = Object.keys(SETTINGS) as AppName[];

const validators = new Map<Chart, ReturnType<Ajv['compile']>>();
function schemaErrors(chart: Chart, values: unknown): string[] {
  if (!validators.has(chart)) validators.set(chart, new Ajv({ allErrors: true, strict: false }).compile(chart.schema!));
  const validate = validators.get(chart)!;
  return validate(values) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`);
}

/** `values` with `path` set to `value`. */
function withValue(values: Record<string, unknown>, path: string, value: unknown): Record<string, unknown> {
  const copy = structuredClone(values);
  const keys = path.split('.');
  let at = copy;
  for (const key of keys.slice(0, -1)) at = at[key] as Record<string, unknown>;
  at[keys.at(-1)!] = value;
  return copy;
}

describe.each(apps)('%s chart: settings as values', (app) => {
  const chart = chartOf(app);

  it('the schema refuses each value the app would refuse, and takes the one the tests below set', () => {
    for (const setting of SETTINGS[app]) {
      for (const bad of setting.bad) {
        const errors = schemaErrors(chart, withValue(chart.values, setting.value, JSON.parse(bad)));
        expect({ value: setting.value, bad, refused: errors.length > 0 }).toEqual({ value: setting.value, bad, refused: true });
        // …and the app, given that value as its variable, refuses it too: the schema is no stricter than the app.
        expect(() => loadAppConfig(app, { [setting.variable]: String(JSON.parse(bad)) })).toThrow(setting.variable);
      }
      expect(schemaErrors(chart, withValue(chart.values, setting.value, JSON.parse(setting.set)))).toEqual([]);
    }
  });
});

const helm = findHelm();
(helm ? describe : describe.skip)('with Helm', () => {
  const template = (dir: string, args: string[]) =>
    spawnSync(helm, ['template', 'trellis', '--kube-version', '1.30.0', dir, ...args], { encoding: 'utf8' });
  /** The env of the app container of the one Deployment `helm template` renders for `app`. */
  const containerEnv = (app: AppName, args: string[], dir = chartOf(app).dir): Record<string, string> => {
    const result = template(dir, args);
    expect(result.status === 0 ? 'ok' : `${result.stdout}${result.stderr}`).toBe('ok');
    const deployment = parseAllDocuments(result.stdout)
      .map(
        (d) =>
          d.toJS() as {
            kind: string;
            metadata: { name: string };
            spec: { template: { spec: { containers: Array<{ name: string; env?: Array<{ name: string; value?: string }> }> } } };
          },
      )
      .find((d) => d?.kind === 'Deployment' && d.metadata.name === `trellis-${app}`)!;
    const container = deployment.spec.template.spec.containers.find((c) => c.name === app)!;
    return Object.fromEntries((container.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
  };
  const configOf = (app: AppName, env: Record<string, string>) => loadAppConfig(app, env) as Record<string, unknown>;

  describe.each(apps)('%s chart', (app) => {
    it('with its defaults, each variable is rendered and the app reads its own default from it', () => {
      const env = containerEnv(app, required(app));
      const fromChart = configOf(app, env);
      const appDefaults = configOf(app, {});
      for (const { variable } of SETTINGS[app]) {
        expect({ variable, rendered: variable in env }).toEqual({ variable, rendered: true });
        expect({ variable, value: fromChart[variable] }).toEqual({ variable, value: appDefaults[variable] });
      }
    });

    it('each value set reaches its variable, and the app accepts it', () => {
      const settings = SETTINGS[app];
      const env = containerEnv(app, [...required(app), ...settings.flatMap((s) => ['--set-json', `${s.value}=${s.set}`])]);
      expect(Object.fromEntries(settings.map((s) => [s.variable, env[s.variable]]))).toEqual(
        Object.fromEntries(settings.map((s) => [s.variable, s.becomes])),
      );
      const config = configOf(app, env);
      for (const s of settings)
        expect({ variable: s.variable, value: String(config[s.variable]) }).toEqual({ variable: s.variable, value: s.becomes });
    });

    it('helm template refuses a value out of bounds, naming it', () => {
      const [setting] = SETTINGS[app].filter((s) => s.value.startsWith('limits.http.'));
      const result = template(chartOf(app).dir, [...required(app), '--set-json', `${setting!.value}=${setting!.bad[0]}`]);
      expect(result.status).not.toBe(0);
      expect(result.stderr).toContain(setting!.value.split('.').at(-1));
    });
  });

  it('helm template refuses a gRPC connection limit between 0 and 1000 ms (0 is off; less would close connections between calls)', () => {
    const result = template(chartOf('control-plane').dir, ['--set', 'limits.grpc.maxConnectionIdleMs=500']);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('maxConnectionIdleMs');
  });

  it("the umbrella chart passes a subchart's settings through", () => {
    const env = containerEnv(
      'control-plane',
      [
        '--set',
        'authz.ca.existingSecret=mesh-ca',
        '--set',
        'control-plane.limits.grpc.maxConnectionAgeMs=600000',
        '--set',
        'authz.limits.grpc.maxConnectionAgeMs=3600000',
      ],
      charts.get('trellis')!.dir,
    );
    expect(env['TRELLIS_GRPC_MAX_CONNECTION_AGE_MS']).toBe('600000');
    expect(
      containerEnv(
        'authz',
        ['--set', 'authz.ca.existingSecret=mesh-ca', '--set', 'authz.limits.grpc.maxConnectionAgeMs=3600000'],
        charts.get('trellis')!.dir,
      )['TRELLIS_GRPC_MAX_CONNECTION_AGE_MS'],
    ).toBe('3600000');
  });
});
