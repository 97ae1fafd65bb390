// `trellis agent --envoy-bootstrap` and `trellis bootstrap` render one sidecar's
// bootstrap the same way (bootstrap/sidecar-options.ts): two sidecars on one VM
// each need their own admin, outbound and ready ports, recorded in the unit's
// environment file (TRELLIS_ENVOY_ADMIN_PORT, TRELLIS_OUTBOUND_PORT,
// TRELLIS_ENVOY_READY_PORT), and the agent must honour them as the one-shot command
// does. Real etcd and the real control plane rendering GET /bootstrap/{service}.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { startEtcd, type TestEtcd } from '@trellis/testing';
import { AppProcess, bundle, eventually, removeBundles, startDevControlPlane, unregisteredOrdersAgentArgs } from './support/built-apps';

describe('trellis agent --envoy-bootstrap takes the sidecar ports trellis bootstrap takes', () => {
  let etcd: TestEtcd;
  let dir: string;
  let controlPlane: AppProcess;
  let controlPlaneUrl: string;

  beforeAll(async () => {
    etcd = await startEtcd();
    dir = await mkdtemp(join(tmpdir(), 'agent-envoy-bootstrap-'));
    const store = new MeshStore(etcd.client(), new KeyLayout(etcd.prefix));
    await store.createService({ name: 'orders', team: 'shop', protocol: 'http', port: 9080 }, 'test');
    // Local-development settings: /bootstrap is open, so the test needs no authz.
    ({ process: controlPlane, httpUrl: controlPlaneUrl } = await startDevControlPlane(etcd));
  }, 180_000);
  afterAll(async () => {
    await controlPlane?.stop();
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    removeBundles();
  });

  it('renders the same bootstrap as trellis bootstrap, with the ports from the unit environment', async () => {
    const ports = { TRELLIS_ENVOY_ADMIN_PORT: '15100', TRELLIS_OUTBOUND_PORT: '15101', TRELLIS_ENVOY_READY_PORT: '15102' };
    const locality = ['--region=eu', '--zone=eu-1'];

    const oneShot = join(dir, 'bootstrap.yaml');
    const run = AppProcess.start(
      'bootstrap',
      bundle('cli'),
      [
        '--control-plane',
        controlPlaneUrl,
        'bootstrap',
        'orders',
        '--app-port=8080',
        '--node=orders-1',
        ...locality,
        '--retry-for=0',
        '--out',
        oneShot,
      ],
      ports,
    );
    expect((await run.exited) === 0 ? 'ok' : run.recentOutput(30)).toBe('ok');
    const expected = await readFile(oneShot, 'utf8');
    // What the ports change, as the control plane renders them (so equality below is about them too).
    expect(expected).toMatch(/port_value: 15100/); // admin
    expect(expected).toMatch(/trellis\.outbound_port: 15101/);
    expect(expected).toMatch(/port_value: 15102/); // the /ready listener

    const fromAgent = join(dir, 'agent-bootstrap.yaml');
    // No registry: registering is retried in the background; the bootstrap comes first.
    const agent = AppProcess.start(
      'agent',
      bundle('cli'),
      [
        ...unregisteredOrdersAgentArgs(9080),
        ...locality,
        `--envoy-bootstrap=${fromAgent}`,
        '--app-port=8080',
        `--control-plane=${controlPlaneUrl}`,
        '--http-port=off',
      ],
      { ...ports, TRELLIS_SERVICE_SECRET: 'orders-secret-0123456789' },
    );
    try {
      const written = await eventually(
        'the agent wrote the bootstrap',
        async () => (await readFile(fromAgent, 'utf8').catch(() => '')) || undefined,
        60_000,
        [agent, controlPlane],
      );
      expect(written).toBe(expected);
    } finally {
      await agent.stop();
    }
  }, 180_000);

  it('a bad port stops the agent with a message naming the variable, before it asks anyone', async () => {
    const agent = AppProcess.start(
      'agent',
      bundle('cli'),
      [
        'agent',
        '--service=orders',
        '--port=9080',
        '--registry=http://127.0.0.1:9',
        `--envoy-bootstrap=${join(dir, 'never.yaml')}`,
        '--app-port=8080',
        `--control-plane=${controlPlaneUrl}`,
      ],
      { TRELLIS_SERVICE_SECRET: 'orders-secret-0123456789', TRELLIS_OUTBOUND_PORT: '15001x' },
    );
    expect(await agent.exited).toBe(2);
    expect(agent.recentOutput(20)).toMatch(/--outbound-port \(TRELLIS_OUTBOUND_PORT\) must be a port from 1 to 65535, got "15001x"/);
  }, 120_000);
});
