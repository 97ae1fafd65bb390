// The app settings each Helm chart carries as typed values (limits on the wire, xDS stream limits, proxy
// status, endpoint retention, the Check worker, token lifetimes, …): each value reaches its variable in the
// container, the chart's defaults are the app's own (read back with the app's config loader), and a value
// the app would refuse is refused by values.schema.json — by Ajv here and by `helm template` itself.
// Secrets come from Kubernetes Secrets only: a secretKeyRef for a variable, a Secret volume for a file.
// Every variable an app reads is rendered by its chart or listed in NOT_VALUES with the reason.
import Ajv from 'ajv';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { appVariables, loadAppConfig, mentionedVariables } from './app-env';
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
  {
    value: 'limits.grpc.listenBacklog',
    variable: 'TRELLIS_GRPC_LISTEN_BACKLOG',
    set: '8192',
    becomes: '8192',
    bad: ['0', '65536'],
  },
];

const SETTINGS: Record<AppName, Setting[]> = {
  registry: [
    ...HTTP,
    // The largest allowed reaches the app as digits.
    {
      value: 'auth.maxTokenLifetimeSeconds',
      variable: 'TRELLIS_AUTH_MAX_TOKEN_LIFETIME_SECONDS',
      set: '2592000',
      becomes: '2592000',
      bad: ['59', '2592001'],
    },
  ],
  'control-plane': [
    ...HTTP,
    ...TLS_AND_GRPC,
    { value: 'authz.tls', variable: 'TRELLIS_AUTHZ_TLS', set: 'false', becomes: 'false', bad: ['"maybe"'] },
    {
      value: 'xds.maxStreamsPerConnection',
      variable: 'TRELLIS_XDS_MAX_STREAMS_PER_CONNECTION',
      set: '32',
      becomes: '32',
      bad: ['0', '1001'],
    },
    {
      value: 'xds.maxRequestBytes',
      variable: 'TRELLIS_XDS_MAX_REQUEST_BYTES',
      set: '1048576',
      becomes: '1048576',
      bad: ['65535', '67108865'],
    },
    { value: 'xds.firstRequestTimeoutMs', variable: 'TRELLIS_XDS_FIRST_REQUEST_TIMEOUT_MS', set: '2000', becomes: '2000', bad: ['99'] },
    { value: 'xds.keepaliveTimeMs', variable: 'TRELLIS_XDS_KEEPALIVE_TIME_MS', set: '20000', becomes: '20000', bad: ['999'] },
    { value: 'xds.keepaliveTimeoutMs', variable: 'TRELLIS_XDS_KEEPALIVE_TIMEOUT_MS', set: '90000', becomes: '90000', bad: ['600001'] },
    { value: 'xds.changeRehearsal', variable: 'TRELLIS_XDS_CHANGE_REHEARSAL', set: 'false', becomes: 'false', bad: ['"maybe"'] },
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
    {
      value: 'kubernetesIdentity.tokenAudience',
      variable: 'TRELLIS_K8S_TOKEN_AUDIENCE',
      set: '"mesh-ca"',
      becomes: 'mesh-ca',
      bad: [JSON.stringify('a'.repeat(257))],
    },
  ],
};

/** Variables an app reads that its chart deliberately does not render, and why. */
const NOT_VALUES: Record<AppName, Record<string, string>> = {
  registry: {
    // libs/runtime's shared variables for apps with a TLS or gRPC port; the registry has neither.
    TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS: 'no TLS port',
    TRELLIS_HTTP2_PREFACE_TIMEOUT_MS: 'no TLS port',
    TRELLIS_TLS_MAX_PENDING_CONNECTIONS: 'no TLS port',
    TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS: 'no gRPC port',
    TRELLIS_GRPC_MAX_CONNECTION_AGE_MS: 'no gRPC port',
    TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS: 'no gRPC port',
    TRELLIS_GRPC_LISTEN_BACKLOG: 'no gRPC port',
    // The chart mounts its auth Secret and sets the _FILE forms, which the registry follows (a rotation
    // needs no rollout); the environment forms would be read at start only.
    TRELLIS_ADMIN_TOKEN: 'the chart sets TRELLIS_ADMIN_TOKEN_FILE, followed without a restart',
    TRELLIS_CSRF_SECRET: 'the chart sets TRELLIS_CSRF_SECRET_FILE, followed without a restart',
  },
  'control-plane': {
    // The chart mounts adminToken.existingSecret's key and sets the _FILE form, followed without a restart.
    TRELLIS_ADMIN_TOKEN: 'the chart sets TRELLIS_ADMIN_TOKEN_FILE, followed without a restart',
    // Measured and left off (docs/benchmarks.md): a diagnostic for the benchmarks, not an operator's setting yet.
    TRELLIS_XDS_STREAM_REHEARSAL: 'an experiment, off: it slowed round 1 at 1,000 / 1,000 in 4 of 5 pairs',
  },
  authz: {
    // The chart always mounts a key directory (signingKeys.existingSecret or the generated one): a Secret
    // with one key is that variable's key, re-read on rotation, which an environment variable is not.
    TRELLIS_SIGNING_KEY: 'a key in the environment: signingKeys.existingSecret holds it as a file',
    TRELLIS_SIGNING_KEY_EPHEMERAL: 'applies only when no key is found, and the chart always has one',
    TRELLIS_CA_DEV_ROOT_DIR: 'local development only',
  },
};

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } };
}
interface Container {
  name: string;
  env?: EnvVar[];
  volumeMounts?: Array<{ name: string; mountPath: string; subPath?: string }>;
}
interface Volume {
  name: string;
  secret?: { secretName: string; items?: Array<{ key: string; path: string }>; optional?: boolean };
}
interface PodSpec {
  containers: Container[];
  volumes?: Volume[];
}

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
  /** The app container of the one Deployment `helm template` renders for `app`, and the pod's volumes. */
  const appContainer = (app: AppName, args: string[], dir = chartOf(app).dir): { container: Container; volumes: Volume[] } => {
    const result = template(dir, args);
    expect(result.status === 0 ? 'ok' : `${result.stdout}${result.stderr}`).toBe('ok');
    const deployment = parseAllDocuments(result.stdout)
      .map((d) => d.toJS() as { kind: string; metadata: { name: string }; spec: { template: { spec: PodSpec } } })
      .find((d) => d?.kind === 'Deployment' && d.metadata.name === `trellis-${app}`)!;
    const pod = deployment.spec.template.spec;
    return { container: pod.containers.find((c) => c.name === app)!, volumes: pod.volumes ?? [] };
  };
  /** The plain-value env of the app container. */
  const containerEnv = (app: AppName, args: string[], dir = chartOf(app).dir): Record<string, string> => {
    const { container } = appContainer(app, args, dir);
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

  describe('secrets come from Kubernetes Secrets', () => {
    /** The Secret volume mounted where `path` lies, and the file it maps there. */
    const secretFileOf = ({ container, volumes }: { container: Container; volumes: Volume[] }, path: string) => {
      const mount = container.volumeMounts!.find((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`))!;
      expect(mount.subPath).toBeUndefined(); // a directory mount: a rotated Secret reaches the pod
      const volume = volumes.find((v) => v.name === mount.name)!;
      return { secretName: volume.secret?.secretName, items: volume.secret?.items, file: path.slice(mount.mountPath.length + 1) };
    };
    const variable = (container: Container, name: string) => container.env!.find((e) => e.name === name);

    it("control plane: the admin token is the named Secret's key mounted as a file, the variable its path; absent without one", () => {
      const rendered = appContainer('control-plane', ['--set', 'adminToken.existingSecret=registry-auth', '--set', 'adminToken.key=token']);
      const path = variable(rendered.container, 'TRELLIS_ADMIN_TOKEN_FILE')!.value!;
      const { secretName, items, file } = secretFileOf(rendered, path);
      expect({ secretName, items }).toEqual({ secretName: 'registry-auth', items: [{ key: 'token', path: file }] });
      expect(variable(rendered.container, 'TRELLIS_ADMIN_TOKEN')).toBeUndefined();
      // Followed on the same poll as the xDS TLS files, rendered for it even without TLS.
      expect(variable(rendered.container, 'TRELLIS_XDS_TLS_RELOAD_SECONDS')?.value).toBe('60');
      const without = appContainer('control-plane', []).container;
      expect([variable(without, 'TRELLIS_ADMIN_TOKEN_FILE'), variable(without, 'TRELLIS_ADMIN_TOKEN')]).toEqual([undefined, undefined]);
    });

    it('registry: service credentials are a Secret mounted as a directory, the variable its path', () => {
      const rendered = appContainer('registry', ['--set', 'serviceCredentials.existingSecret=agent-credentials']);
      const path = variable(rendered.container, 'TRELLIS_SERVICE_CREDENTIALS')!.value!;
      expect(secretFileOf(rendered, path)).toEqual({ secretName: 'agent-credentials', items: undefined, file: '' });
      expect(variable(appContainer('registry', []).container, 'TRELLIS_SERVICE_CREDENTIALS')).toBeUndefined();
    });

    it('registry: the admin token and CSRF secret are the auth Secret mounted as a directory, the variables their paths', () => {
      for (const [args, secretName] of [
        [[], 'trellis-registry-auth'],
        [['--set', 'auth.existingSecret=registry-auth'], 'registry-auth'],
      ] as const) {
        const rendered = appContainer('registry', [...args]);
        const files = ['TRELLIS_ADMIN_TOKEN_FILE', 'TRELLIS_CSRF_SECRET_FILE'].map((name) =>
          secretFileOf(rendered, variable(rendered.container, name)!.value!),
        );
        expect(files).toEqual([
          { secretName, items: undefined, file: 'admin-token' },
          { secretName, items: undefined, file: 'csrf-secret' },
        ]);
        // Both keys are optional (the generated Secret has no admin-token): a missing one is an absent file, which the
        // registry takes as not given; so is a missing Secret, as with the secretKeyRefs before.
        expect(rendered.volumes.find((v) => v.secret?.secretName === secretName)!.secret).toMatchObject({ optional: true });
        expect(variable(rendered.container, 'TRELLIS_ADMIN_TOKEN')).toBeUndefined();
        expect(variable(rendered.container, 'TRELLIS_CSRF_SECRET')).toBeUndefined();
      }
    });

    it("authz: the client roots are a Secret's key mounted as a file, the variable its path", () => {
      const rendered = appContainer('authz', [
        ...required('authz'),
        '--set',
        'tls.clientCaSecret=edge-roots',
        '--set',
        'tls.clientCaKey=roots.pem',
      ]);
      const path = variable(rendered.container, 'TRELLIS_TLS_CLIENT_CA_FILE')!.value!;
      const { secretName, items, file } = secretFileOf(rendered, path);
      expect({ secretName, items }).toEqual({ secretName: 'edge-roots', items: [{ key: 'roots.pem', path: file }] });
      expect(variable(appContainer('authz', required('authz')).container, 'TRELLIS_TLS_CLIENT_CA_FILE')).toBeUndefined();
    });

    it('no variable holding a secret is ever a plain value', () => {
      const secrets = [
        'TRELLIS_ADMIN_TOKEN',
        'TRELLIS_CSRF_SECRET',
        'TRELLIS_SIGNING_KEY',
        'TRELLIS_REDIS_PASSWORD',
        'TRELLIS_ETCD_PASSWORD',
      ];
      const renders: Array<[AppName, string[]]> = [
        ['registry', ['--set', 'auth.existingSecret=registry-auth']],
        ['control-plane', ['--set', 'adminToken.existingSecret=registry-auth']],
        ['authz', [...required('authz'), '--set', 'redis.passwordSecret=redis-auth']],
      ];
      for (const [app, args] of renders) {
        const env = appContainer(app, args).container.env!;
        for (const e of env.filter((e) => secrets.includes(e.name)))
          expect({ app, name: e.name, secretKeyRef: e.value === undefined && e.valueFrom?.secretKeyRef !== undefined }).toEqual({
            app,
            name: e.name,
            secretKeyRef: true,
          });
      }
    });
  });

  describe('authz: Kubernetes ServiceAccount tokens as identity', () => {
    it('the issuer and JWKS URL reach the app together, and it accepts them', () => {
      const env = containerEnv('authz', [
        ...required('authz'),
        '--set',
        'kubernetesIdentity.tokenIssuer=https://kubernetes.default.svc.cluster.local',
        '--set',
        'kubernetesIdentity.jwksUrl=https://oidc.example.com/openid/v1/jwks',
      ]);
      expect(env).toMatchObject({
        TRELLIS_K8S_TOKEN_ISSUER: 'https://kubernetes.default.svc.cluster.local',
        TRELLIS_K8S_JWKS_URL: 'https://oidc.example.com/openid/v1/jwks',
        TRELLIS_K8S_TOKEN_AUDIENCE: 'trellis-ca',
      });
      expect(configOf('authz', env)['TRELLIS_K8S_JWKS_URL']).toBe('https://oidc.example.com/openid/v1/jwks');
    });

    it('helm template refuses one without the other, as the app does', () => {
      const result = template(chartOf('authz').dir, [...required('authz'), '--set', 'kubernetesIdentity.tokenIssuer=https://issuer']);
      expect(result.status).not.toBe(0);
      expect(result.stderr).toContain('kubernetesIdentity');
      expect(() => loadAppConfig('authz', { TRELLIS_K8S_TOKEN_ISSUER: 'https://issuer' })).toThrow('TRELLIS_K8S_JWKS_URL');
    });
  });

  it.each(apps)('%s chart: every variable the app reads is rendered, or NOT_VALUES says why not', (app) => {
    const dir = join(chartOf(app).dir, 'templates');
    const templates = readdirSync(dir)
      .map((name) => readFileSync(join(dir, name), 'utf8'))
      .join('\n');
    const rendered = mentionedVariables(templates);
    const missing = [...appVariables(app)].filter((v) => !rendered.has(v) && !(v in NOT_VALUES[app]));
    expect(missing).toEqual([]);
  });
});

describe.each(apps)('%s chart: secrets and paired values in the schema', (app) => {
  const chart = chartOf(app);
  const BAD: Record<AppName, Array<[path: string, value: unknown]>> = {
    registry: [['serviceCredentials.existingSecret', 'Not_A_Secret_Name']],
    'control-plane': [
      ['adminToken.existingSecret', 'Not_A_Secret_Name'],
      ['adminToken.key', ''],
    ],
    authz: [
      ['tls.clientCaSecret', 'Not_A_Secret_Name'],
      ['kubernetesIdentity.tokenIssuer', 'https://issuer'], // without jwksUrl
      ['kubernetesIdentity.jwksUrl', 'ftp://issuer/jwks'],
    ],
  };
  it.each(BAD[app])('refuses %s = %j', (path, value) => {
    expect(schemaErrors(chart, withValue(chart.values, path, value))).not.toEqual([]);
  });
});
