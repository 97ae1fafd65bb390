// The systemd units under deploy/systemd: systemd-analyze verify accepts them as
// installed (drop-ins included) without a single warning, their sandbox scores "OK"
// or better, they follow the hardening policy, and the env files set only variables
// the apps know.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { appVariables, loadAppConfig, mentionedVariables, parseEnvFile } from './app-env';
import { createVerifyRoot, exposureLevel, systemdAnalyze, verifyUnit, type VerifyRoot } from './systemd-analyze';
import { directiveValues, executables, parseUnit } from './systemd-unit';
import { CREDENTIAL_NAME_PREFIX } from '../../../apps/authz/src/keys/load-signing-keys';
import { SIDECAR_CERTIFICATE_DIR } from '@trellis/mesh-contracts';
import { APPS, DEPLOY_DIR } from './workspace';

const SYSTEMD_DIR = join(DEPLOY_DIR, 'systemd');
const unitFiles = readdirSync(SYSTEMD_DIR).filter((f) => f.endsWith('.service'));
const read = (name: string) => readFileSync(join(SYSTEMD_DIR, name), 'utf8');
const appUnits = APPS.map((app) => ({ app, file: `trellis-${app}.service` }));

describe('systemd units', () => {
  it('has a unit per app and the Envoy sidecar template', () => {
    expect(unitFiles.sort()).toEqual([
      'trellis-agent@.service',
      'trellis-authz.service',
      'trellis-control-plane.service',
      'trellis-envoy@.service',
      'trellis-registry.service',
    ]);
  });

  describe('systemd-analyze verify', () => {
    let root: VerifyRoot;
    beforeAll(() => {
      systemdAnalyze(); // fails with the install command when systemd-analyze is missing
      const units = Object.fromEntries(unitFiles.map((f) => [f, read(f)]));
      root = createVerifyRoot({
        units,
        dropIns: { 'trellis-registry.service': { 'etcd-tls.conf': read('etcd-tls.conf') } },
        binaries: [...new Set(unitFiles.flatMap((f) => executables(parseUnit(read(f)))))],
      });
    });
    afterAll(() => root?.remove());

    it.each([
      'trellis-registry.service',
      'trellis-control-plane.service',
      'trellis-authz.service',
      'trellis-envoy@orders.service',
      'trellis-agent@orders.service',
    ])('%s verifies with no warning', (unit) => {
      const result = verifyUnit(root, unit);
      expect(result.output).toBe('');
      expect(result.status).toBe(0);
    });

    it('catches a mistake (so an empty output above means something)', () => {
      const broken = createVerifyRoot({
        units: { 'trellis-broken.service': read('trellis-registry.service').replace('ProtectSystem=strict', 'ProtectSystm=strict') },
        binaries: ['/usr/bin/node'],
      });
      try {
        expect(verifyUnit(broken, 'trellis-broken.service').output).toMatch(/Unknown key 'ProtectSystm'/);
      } finally {
        broken.remove();
      }
    });
  });

  it.each(unitFiles)('%s scores 2.0 or better in systemd-analyze security', (file) => {
    expect(exposureLevel(join(SYSTEMD_DIR, file))).toBeLessThanOrEqual(2.0);
  });

  it.each(unitFiles)('%s follows the hardening policy', (file) => {
    const unit = parseUnit(read(file));
    const one = (key: string) => directiveValues(unit, 'Service', key);
    expect(one('Type')).toEqual(['exec']);
    expect(one('DynamicUser')).toEqual(['yes']);
    expect(one('NoNewPrivileges')).toEqual(['yes']);
    expect(one('ProtectSystem')).toEqual(['strict']);
    expect(one('CapabilityBoundingSet')).toEqual(['']);
    expect(one('SystemCallFilter')).toContain('@system-service');
    expect(one('RestrictAddressFamilies')).toHaveLength(1);
    expect(directiveValues(unit, 'Install', 'WantedBy')).toEqual(['multi-user.target']);
  });

  it.each(appUnits)('$file runs the app under /usr/bin/node without MemoryDenyWriteExecute (V8 JIT)', ({ app, file }) => {
    const unit = parseUnit(read(file));
    expect(directiveValues(unit, 'Service', 'ExecStart')).toEqual([`/usr/bin/node /opt/trellis/${app}/main.js`]);
    expect(directiveValues(unit, 'Service', 'EnvironmentFile')).toEqual([`/etc/trellis/${app}.env`]);
    expect(directiveValues(unit, 'Service', 'MemoryDenyWriteExecute')).toEqual([]);
  });

  it('authz loads its signing key and the mesh CA as credentials named the way authz looks for them', () => {
    const unit = parseUnit(read('trellis-authz.service'));
    expect(directiveValues(unit, 'Service', 'LoadCredential')).toEqual([
      'signing-key.pem:/etc/trellis/credentials/authz-signing-key.pem',
      'ca.crt:/etc/trellis/credentials/mesh-ca.crt',
      'ca.key:/etc/trellis/credentials/mesh-ca.key',
    ]);
    // The names authz's CA source reads from $CREDENTIALS_DIRECTORY (a module boundary keeps its import out of here).
    expect(readFileSync(join(__dirname, '../../../apps/authz/src/ca/ca-source.ts'), 'utf8')).toContain(
      "CA_CREDENTIALS = { cert: 'ca.crt', key: 'ca.key', bundle: 'ca-bundle.crt' }",
    );
    // The CA key must never be taken for a token signing key.
    expect(['ca.crt', 'ca.key', 'ca-bundle.crt'].filter((id) => id.startsWith(CREDENTIAL_NAME_PREFIX))).toEqual([]);
    // The mTLS token port is set where the sidecars' units look for it.
    expect(read('authz.env')).toMatch(/^TRELLIS_MTLS_PORT=8443$/m);
    // authz takes only signing-key* from $CREDENTIALS_DIRECTORY; the etcd drop-in's ids must not match.
    expect('signing-key.pem'.startsWith(CREDENTIAL_NAME_PREFIX)).toBe(true);
    const etcdIds = directiveValues(parseUnit(read('etcd-tls.conf')), 'Service', 'LoadCredential').map((v) => v.split(':')[0]!);
    expect(etcdIds.filter((id) => id.startsWith(CREDENTIAL_NAME_PREFIX))).toEqual([]);
  });

  it('the etcd TLS drop-in passes credentials by path inside the credentials directory', () => {
    const dropIn = parseUnit(read('etcd-tls.conf'));
    const ids = directiveValues(dropIn, 'Service', 'LoadCredential').map((v) => v.split(':')[0]);
    const env = directiveValues(dropIn, 'Service', 'Environment');
    expect(env).toEqual(ids.map((id) => expect.stringMatching(new RegExp(`^TRELLIS_ETCD_[A-Z_]+_FILE=%d/${id!.replace('.', '\\.')}$`))));
    for (const line of env) expect(appVariables('registry')).toContain(line.split('=')[0]);
  });

  it('the Envoy sidecar fetches its bootstrap with `trellis bootstrap`, named after the service, in a sandbox Node can run in', () => {
    const unit = parseUnit(read('trellis-envoy@.service'));
    expect(directiveValues(unit, 'Service', 'ExecStartPre')).toEqual([
      '/usr/bin/node /opt/trellis/cli/main.js bootstrap %i --out %t/trellis-envoy/%i/bootstrap.yaml',
    ]);
    // ExecStartPre= runs in the unit's sandbox: V8's JIT dies under MemoryDenyWriteExecute=yes.
    expect(directiveValues(unit, 'Service', 'MemoryDenyWriteExecute')).toEqual([]);
    expect(directiveValues(unit, 'Service', 'Environment')).toContain('TRELLIS_NODE_ID=%i.%H');
    expect(directiveValues(unit, 'Service', 'ExecStart')[0]).toMatch(
      /^\/usr\/bin\/envoy --config-path %t\/trellis-envoy\/%i\/bootstrap\.yaml /,
    );
    expect(directiveValues(unit, 'Service', 'RuntimeDirectory')).toEqual(['trellis-envoy/%i']);
  });

  it("envoy/example.env records the sidecar's own admin and outbound ports, under the names `trellis bootstrap` reads", () => {
    // The command's own options, and the sidecar options it shares with `trellis agent --envoy-bootstrap`.
    const source = ['commands/bootstrap.ts', 'bootstrap/sidecar-options.ts']
      .map((file) => readFileSync(join(DEPLOY_DIR, '../apps/cli/src', file), 'utf8'))
      .join('\n');
    const known = new Set([...source.matchAll(/'(TRELLIS_[A-Z_]+)'/g)].map((m) => m[1]!));
    const env = parseEnvFile(read('envoy/example.env'));
    expect(env).toMatchObject({ TRELLIS_ENVOY_ADMIN_PORT: '15000', TRELLIS_OUTBOUND_PORT: '15001' });
    // Everything but Envoy's own log level is read by `trellis bootstrap` (the control plane URL is the CLI's global flag).
    expect(Object.keys(env).filter((n) => !known.has(n) && n !== 'TRELLIS_CONTROL_PLANE_URL' && n !== 'ENVOY_LOG_LEVEL')).toEqual([]);
  });

  it("the agent and the service's Envoy share a dynamic user and the state directory holding the workload certificate", () => {
    const agent = parseUnit(read('trellis-agent@.service'));
    const envoy = parseUnit(read('trellis-envoy@.service'));
    for (const unit of [agent, envoy]) {
      expect(directiveValues(unit, 'Service', 'DynamicUser')).toEqual(['yes']);
      expect(directiveValues(unit, 'Service', 'User')).toEqual(['trellis-%i']);
      expect(directiveValues(unit, 'Service', 'StateDirectory')).toEqual(['trellis-workload-%i']);
    }
    // Envoy reads it where the control plane's path-based SDS resources point.
    expect(directiveValues(envoy, 'Service', 'BindReadOnlyPaths')).toEqual([
      `/var/lib/trellis-workload-%i:${SIDECAR_CERTIFICATE_DIR.replace(/^\/var\/run\//, '/run/')}`,
    ]);
    // trellis bootstrap asks authz's mTLS port with that directory.
    expect(read('envoy/example.env')).toContain(
      '#TRELLIS_AUTHZ_URL=https://authz.internal:8443\n#TRELLIS_CERTIFICATE_DIR=/var/lib/trellis-workload-orders',
    );
  });

  it('the agent runs `trellis agent` beside its app unit, stops before it, and authenticates with the service credential', () => {
    const unit = parseUnit(read('trellis-agent@.service'));
    const service = (key: string) => directiveValues(unit, 'Service', key);
    expect(service('ExecStart')).toEqual(['/usr/bin/node /opt/trellis/cli/main.js agent']);
    expect(service('MemoryDenyWriteExecute')).toEqual([]);
    // Ordered after the app: systemd stops it first, so it drains while the app still serves.
    expect(directiveValues(unit, 'Unit', 'After')).toEqual(['network-online.target %i.service']);
    expect(directiveValues(unit, 'Unit', 'PartOf')).toEqual(['%i.service']);
    expect(service('LoadCredential')).toEqual(['service-secret:/etc/trellis/credentials/%i-service-secret']);
    expect(service('Environment')).toEqual(expect.arrayContaining(['TRELLIS_SERVICE=%i', 'TRELLIS_INSTANCE_ID=%i.%H']));
    expect(service('EnvironmentFile')).toEqual(['/etc/trellis/agent/%i.env']);
    // Long enough to drain (TRELLIS_DRAIN) before systemd kills it.
    expect(service('TimeoutStopSec')).toEqual(['60s']);
  });

  it('agent.env sets only variables `trellis agent` reads', () => {
    // The agent's settings are the TRELLIS_* names its options declare (apps/cli/src/commands/agent.ts);
    // TRELLIS_REGISTRY_URL is the CLI's global --registry.
    const source = readFileSync(join(DEPLOY_DIR, '../apps/cli/src/commands/agent.ts'), 'utf8');
    const known = new Set([...source.matchAll(/'(TRELLIS_[A-Z_]+)'/g)].map((m) => m[1]!));
    expect(known).toContain('TRELLIS_HEALTH_CHECK');
    const env = parseEnvFile(read('agent.env'));
    expect(Object.keys(env).filter((name) => !known.has(name) && name !== 'TRELLIS_REGISTRY_URL')).toEqual([]);
    expect(env).toMatchObject({ TRELLIS_PORT: '8080', TRELLIS_HEALTH_CHECK: 'http://127.0.0.1:8080/healthz' });
  });

  it.each([...APPS])('%s.env sets only variables the app accepts', (app) => {
    const text = read(`${app}.env`);
    const known = appVariables(app);
    const unknown = [...mentionedVariables(text)].filter((v) => !known.has(v));
    expect(unknown).toEqual([]);
    expect(text).toMatch(/^TRELLIS_ETCD_ENDPOINTS=/m);
  });

  it.each([...APPS])("%s.env is accepted by the app's own config schema", (app) => {
    const env = parseEnvFile(read(`${app}.env`));
    expect(() => loadAppConfig(app, env)).not.toThrow();
    // The loader really judges: a wrong value in the same file is refused, naming it.
    expect(() => loadAppConfig(app, { ...env, TRELLIS_ETCD_ENDPOINTS: 'etcd:2379' })).toThrow(/TRELLIS_ETCD_ENDPOINTS/);
  });
});
