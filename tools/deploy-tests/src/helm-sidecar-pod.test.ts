// The Helm sidecar's pod as `helm template` renders it, run: the init container and the agent
// container, each started as the trellis CLI with exactly the environment and arguments the chart
// gives it — only the Services' URLs, the pod's volume paths and the downward-API fields are
// replaced by this host's — against the real authz in its production defaults (an operator CA,
// no insecure callers), control plane and registry. Kubernetes itself (scheduling, volumes,
// probes) and Envoy are not part of it: helm.test.ts checks the pod's shape, the real-Envoy
// suite Envoy's side.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { parseAllDocuments } from 'yaml';
import { generateRootCa } from '@trellis/pki';
import { freePort, startEtcd, startRedis, type TestEtcd, type TestRedis } from '@trellis/testing';
import { findCharts, findHelm } from './helm-charts';
import { answersOk, bundleApp, eventually, Proc, removeBundles } from './processes';

interface Container {
  name: string;
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}

const helm = findHelm();
const withHelm = helm ? describe : describe.skip;
const SECRET = 'orders-secret-0123456789';
const POD = 'orders-7d9f-abcde';
const ADMIN = 'admin-token-0123456789abcdef';

withHelm('the Helm sidecar pod, as rendered, against a production authz', () => {
  let etcd: TestEtcd;
  let redis: TestRedis;
  let dir: string;
  const bundles: Record<string, string> = {};
  const ports: Record<string, number> = {};
  let appPortServer: Server;

  beforeAll(async () => {
    [etcd, redis] = await Promise.all([startEtcd(), startRedis()]);
    dir = mkdtempSync(join(tmpdir(), 'helm-sidecar-pod-'));
    for (const app of ['authz', 'control-plane', 'registry', 'cli']) bundles[app] = bundleApp(app);
    for (const name of ['authzHttp', 'authzMtls', 'authzGrpc', 'cpHttp', 'xds', 'registry', 'app', 'agent']) ports[name] = await freePort();
    // The operator's mesh CA, as authz.ca.existingSecret mounts it.
    const root = await generateRootCa({ commonName: 'mesh root' });
    writeFileSync(join(dir, 'ca.crt'), root.certificatePem);
    writeFileSync(join(dir, 'ca.key'), root.keyPem, { mode: 0o600 });
    mkdirSync(join(dir, 'credentials'));
    writeFileSync(join(dir, 'credentials/orders'), `${SECRET}\n`);
    const common = { TRELLIS_ETCD_ENDPOINTS: etcd.endpoints.join(','), TRELLIS_ETCD_PREFIX: etcd.prefix, TRELLIS_HOST: '127.0.0.1' };
    const authz = Proc.start('authz', bundles['authz']!, [], {
      ...common,
      TRELLIS_HTTP_PORT: String(ports['authzHttp']),
      TRELLIS_MTLS_PORT: String(ports['authzMtls']),
      TRELLIS_GRPC_PORT: String(ports['authzGrpc']),
      TRELLIS_REDIS_URL: redis.url,
      TRELLIS_SIGNING_KEY_EPHEMERAL: 'true',
      TRELLIS_CA_CERT_FILE: join(dir, 'ca.crt'),
      TRELLIS_CA_KEY_FILE: join(dir, 'ca.key'),
      TRELLIS_TOKEN_ENDPOINT_CREDENTIALS: join(dir, 'credentials'),
    });
    await eventually('authz ready', async () => answersOk(`http://127.0.0.1:${ports['authzHttp']}/readyz`), [authz]);
    const controlPlane = Proc.start('control-plane', bundles['control-plane']!, [], {
      ...common,
      TRELLIS_HTTP_PORT: String(ports['cpHttp']),
      TRELLIS_XDS_PORT: String(ports['xds']),
      TRELLIS_AUTHZ_ADDRESS: `127.0.0.1:${ports['authzGrpc']}`,
    });
    const registry = Proc.start('registry', bundles['registry']!, [], {
      ...common,
      TRELLIS_HTTP_PORT: String(ports['registry']),
      TRELLIS_ADMIN_TOKEN: ADMIN,
      TRELLIS_SERVICE_CREDENTIALS: join(dir, 'credentials'),
    });
    await eventually(
      'control plane and registry ready',
      async () =>
        (await answersOk(`http://127.0.0.1:${ports['cpHttp']}/readyz`)) && answersOk(`http://127.0.0.1:${ports['registry']}/readyz`),
      [controlPlane, registry],
    );
    const created = await fetch(`http://127.0.0.1:${ports['registry']}/api/v1/services`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'orders', team: 'shop', protocol: 'http', port: 9090, mtls: 'strict' }),
    });
    expect(created.status).toBe(201);
    // The app the agent health-checks (TCP).
    appPortServer = createServer((socket) => socket.end()).listen(ports['app'], '127.0.0.1');
  }, 300_000);

  afterAll(async () => {
    appPortServer?.close();
    await Proc.stopAll();
    await Promise.all([etcd?.stop(), redis?.stop()]);
    removeBundles();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The consumer fixture rendered with the sidecar library, as helm.test.ts renders it. */
  function renderPod(kubeVersion: string, podDir: string): Container[] {
    const chart = join(podDir, 'chart');
    cpSync(join(__dirname, '../fixtures/sidecar-consumer'), chart, { recursive: true });
    cpSync(findCharts().find((c) => c.path === 'trellis-sidecar')!.dir, join(chart, 'charts/trellis-sidecar'), { recursive: true });
    const args = ['template', 't', chart, '--kube-version', kubeVersion, '--set', 'trellisSidecar.agent.enabled=true'];
    const result = spawnSync(helm, [...args, '--set', 'trellisSidecar.authzSecret.name=orders-authz'], { encoding: 'utf8' });
    expect(result.status === 0 ? 'ok' : result.stderr).toBe('ok');
    const spec = (
      parseAllDocuments(result.stdout)[0]!.toJS() as {
        spec: { template: { spec: { initContainers: Container[]; containers: Container[] } } };
      }
    ).spec.template.spec;
    return [...spec.initContainers, ...spec.containers];
  }

  /** A container's environment on this host: the pod's volumes are directories here, its Services local ports. */
  function hostEnv(container: Container, volumes: Record<string, string>): Record<string, string> {
    const fields: Record<string, string> = { 'metadata.name': POD, 'status.podIP': '127.0.0.1', 'spec.nodeName': 'node-1' };
    const services: Array<[string, string]> = [
      ['http://trellis-control-plane.trellis.svc:18080', `http://127.0.0.1:${ports['cpHttp']}`],
      ['https://trellis-authz.trellis.svc:8443', `https://127.0.0.1:${ports['authzMtls']}`],
      ['http://trellis-authz.trellis.svc:8181', `http://127.0.0.1:${ports['authzHttp']}`],
      ['http://trellis-registry.trellis.svc:8080', `http://127.0.0.1:${ports['registry']}`],
      ['tcp://127.0.0.1:8080', `tcp://127.0.0.1:${ports['app']}`],
    ];
    const env: Record<string, string> = {};
    for (const e of container.env ?? []) {
      let value = e.value ?? fields[e.valueFrom?.fieldRef?.fieldPath ?? ''] ?? '';
      value = value.replace('$(POD_NAME)', POD);
      for (const [from, to] of [...services, ...Object.entries(volumes)]) value = value.replace(from, to);
      env[e.name] = value;
    }
    return env;
  }

  /** Directories standing in for the pod's volumes, at the paths the containers mount them. */
  function podVolumes(podDir: string, secret: string): Record<string, string> {
    const volumes = {
      '/run/trellis-credentials': join(podDir, 'credentials'),
      '/var/run/trellis/workload': join(podDir, 'workload'),
      '/etc/trellis-envoy': join(podDir, 'bootstrap'),
    };
    for (const path of Object.values(volumes)) mkdirSync(path, { recursive: true });
    // The projected authzSecret.
    writeFileSync(join(volumes['/run/trellis-credentials'], 'authz-secret'), `${secret}\n`);
    return volumes;
  }

  it.each([
    ['native', '1.30.0'],
    ['classic', '1.28.0'],
  ])(
    '%s form (Kubernetes %s): the init container certifies and bootstraps, then the agent renews and registers',
    async (_form, kubeVersion) => {
      const podDir = mkdtempSync(join(dir, 'pod-'));
      const containers = renderPod(kubeVersion, podDir);
      const volumes = podVolumes(podDir, SECRET);
      const init = containers.find((c) => c.name === 'trellis-bootstrap')!;
      const initArgs = init.args!.map((a) => a.replace('/etc/trellis-envoy', volumes['/etc/trellis-envoy']));
      const initRun = Proc.start('init container', bundles['cli']!, initArgs, hostEnv(init, volumes));
      expect((await initRun.exited) === 0 ? 'ok' : initRun.output).toBe('ok');

      const bootstrap = readFileSync(join(volumes['/etc/trellis-envoy'], 'bootstrap.yaml'), 'utf8');
      expect(bootstrap).toContain(`id: ${POD}`);
      expect(bootstrap).toMatch(/Bearer ey[\w-]+\.[\w-]+\.[\w-]+/);
      const workload = volumes['/var/run/trellis/workload'];
      const first = new X509Certificate(readFileSync(join(workload, 'cert.pem'), 'utf8'));
      expect(first.subjectAltName).toBe('URI:spiffe://trellis.local/svc/orders');
      expect(first.verify(new X509Certificate(readFileSync(join(dir, 'ca.crt'), 'utf8')).publicKey)).toBe(true);
      expect(
        readdirSync(workload)
          .filter((f) => f.endsWith('.sds.json'))
          .sort(),
      ).toEqual(['trellis-trust-bundle.sds.json', 'trellis-workload-certificate.sds.json']);

      const agent = containers.find((c) => c.name === 'trellis-agent')!;
      const agentRun = Proc.start('agent', bundles['cli']!, agent.args!, {
        ...hostEnv(agent, volumes),
        TRELLIS_AGENT_HTTP_HOST: '127.0.0.1',
        TRELLIS_AGENT_HTTP_PORT: String(ports['agent']),
      });
      try {
        await eventually(
          'the agent ready: registered, with its own certificate',
          async () => answersOk(`http://127.0.0.1:${ports['agent']}/readyz`),
          [agentRun],
        );
        const renewed = new X509Certificate(readFileSync(join(workload, 'cert.pem'), 'utf8'));
        expect(renewed.serialNumber).not.toBe(first.serialNumber);
        expect(renewed.subjectAltName).toBe(first.subjectAltName);
        expect(readdirSync(workload).filter((f) => f.endsWith('.sds.json'))).toHaveLength(2);
        const instances = (await (await fetch(`http://127.0.0.1:${ports['registry']}/api/v1/services/orders/instances`)).json()) as {
          items: Array<{ id: string; platform: string }>;
        };
        expect(instances.items.map((i) => [i.id, i.platform])).toEqual([[POD, 'k8s']]);
      } finally {
        await agentRun.stop();
      }
    },
    180_000,
  );

  it('attack: a pod holding a wrong credential gets no certificate, no xDS token and no bootstrap', async () => {
    const podDir = mkdtempSync(join(dir, 'pod-'));
    const containers = renderPod('1.30.0', podDir);
    const volumes = podVolumes(podDir, 'not-the-orders-secret-0000');
    const init = containers.find((c) => c.name === 'trellis-bootstrap')!;
    const initRun = Proc.start(
      'init container',
      bundles['cli']!,
      init.args!.map((a) => a.replace('/etc/trellis-envoy', volumes['/etc/trellis-envoy'])),
      hostEnv(init, volumes),
    );
    expect(await initRun.exited).toBe(1);
    expect(initRun.output).toMatch(/the mesh CA refused a certificate for orders: 401/);
    expect(readdirSync(volumes['/etc/trellis-envoy'])).toEqual([]);
    expect(readdirSync(volumes['/var/run/trellis/workload'])).toEqual([]);
  }, 120_000);
});
