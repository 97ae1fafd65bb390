// The `trellis` CLI end to end against the real local mesh (etcd, registry, control
// plane, authz as processes). The inspection commands, then `trellis agent`: a plain
// gRPC app with no SDK runs under the agent, and a proxyless grpc-js-xds caller calls
// it 25 times a second through the mesh. Short TTLs and generous deadlines; nothing
// here asserts how long anything took.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { credentials } from '@grpc/grpc-js';
import { AggregatedDiscoveryServiceClient } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { DiscoveryRequest, type DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { eventually as pollUntil } from '@trellis/testing';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeDemoCredentials, type DemoCredentials } from '../src/demo/demo';
import { startLocalMesh, WORKSPACE_ROOT, type LocalMesh } from '../src/mesh';
import { freePort } from '../src/ports';
import { startProcess, type ManagedProcess } from '../src/processes';
import { LOCAL_MESH_BUNDLES } from './build-once';

jest.setTimeout(180_000);

interface CallWindow {
  ok: number;
  failed: number;
  instances: Record<string, number>;
  errors: string[];
}

let dataDir: string;
let mesh: LocalMesh;
let creds: DemoCredentials;
let caller: ManagedProcess;
const windows: CallWindow[] = [];
const agents = new Map<string, ManagedProcess>();
const verbose = process.env['E2E_VERBOSE'] ? (name: string, line: string) => process.stdout.write(`[${name}] ${line}\n`) : () => undefined;

/** Waits on the mesh's processes: a call failing while they start is "not yet"; a timeout shows their output. */
const eventually = <T>(what: string, attempt: () => Promise<T | undefined | false>, timeoutMs = 60_000) =>
  pollUntil(what, attempt, timeoutMs, { intervalMs: 250, retryErrors: true, diagnose: recentOutput });

function recentOutput(): string {
  return [...mesh.processes, caller, ...agents.values()]
    .filter(Boolean)
    .map((p) => `--- ${p.name}\n${p.recentOutput.slice(-10).join('\n')}`)
    .join('\n');
}

async function registryPut(path: string, body: unknown): Promise<void> {
  const res = await fetch(`${mesh.registryUrl}${path}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${mesh.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`PUT ${path}: ${res.status} ${await res.text()}`);
}

async function instances(): Promise<Array<{ id: string; drainingSince?: string }>> {
  const res = await fetch(`${mesh.registryUrl}/api/v1/services/echo/instances`, { signal: AbortSignal.timeout(15_000) });
  return ((await res.json()) as { items: Array<{ id: string; drainingSince?: string }> }).items;
}

const hasInstance = async (id: string) => (await instances()).some((i) => i.id === id);

/** Calls answered by `instance` in the caller windows from `since` on. */
const answeredBy = (instance: string, since: number) => windows.slice(since).some((w) => (w.instances[instance] ?? 0) > 0);

async function startAgent(id: string, unhealthyFile: string): Promise<ManagedProcess> {
  const port = await freePort();
  const agent = startProcess({
    name: id,
    command: process.execPath,
    args: [
      join(WORKSPACE_ROOT, 'dist/apps/cli/main.js'),
      'agent',
      '--service=echo',
      `--instance-id=${id}`,
      '--address=127.0.0.1',
      `--port=${port}`,
      '--zone=local',
      `--health-check=grpc://127.0.0.1:${port}`,
      '--health-interval=500ms',
      '--failure-threshold=2',
      '--ttl=5',
      '--drain=5s',
      '--http-host=127.0.0.1',
      '--http-port=0',
      '--',
      process.execPath,
      join(LOCAL_MESH_BUNDLES, 'plain-app.js'),
    ],
    env: {
      TRELLIS_REGISTRY_URL: mesh.registryUrl,
      TRELLIS_SERVICE_SECRET: creds.secrets.get('echo')!,
      PLAIN_APP_SERVICE: 'echo',
      PLAIN_APP_INSTANCE: id,
      PLAIN_APP_PORT: String(port),
      PLAIN_APP_UNHEALTHY_FILE: unhealthyFile,
    },
    onLine: verbose,
  });
  agents.set(id, agent);
  return agent;
}

/** The app the agent started (its pid is in the agent's log), killed in afterAll if still running. */
const appPids: number[] = [];
async function appPidOf(agent: ManagedProcess): Promise<number> {
  const line = await agent.waitForLine(/"msg":"started the app"/, 30_000);
  const pid = (JSON.parse(line) as { pid: number }).pid;
  appPids.push(pid);
  return pid;
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'trellis-agent-e2e-'));
  const services = [
    { name: 'echo', team: 'echo', dependencies: [], instances: 0 },
    { name: 'caller', team: 'echo', dependencies: ['echo'], instances: 0 },
  ];
  creds = writeDemoCredentials(dataDir, services);
  mesh = await startLocalMesh({ dataDir, preferConventionalPorts: false, onLine: verbose, serviceCredentials: creds.file });
  for (const s of services) {
    await registryPut(`/api/v1/services/${s.name}`, {
      name: s.name,
      team: s.team,
      protocol: 'grpc',
      port: 50051,
      dependencies: s.dependencies.map((service) => ({ service })),
    });
  }
  caller = startProcess({
    name: 'caller',
    command: process.execPath,
    args: [join(LOCAL_MESH_BUNDLES, 'proxyless-caller.js')],
    env: { CALLER_SERVICE: 'caller', CALLER_TARGET: 'echo', CALLER_RATE: '25', TRELLIS_XDS_SERVER: mesh.controlPlane.xdsAddress },
    onLine: (name, line) => {
      verbose(name, line);
      if (line.includes('"msg":"calls"')) windows.push(JSON.parse(line) as CallWindow);
    },
  });
});

afterAll(async () => {
  await Promise.all([...agents.values()].map((a) => a.stop()));
  for (const pid of appPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await caller?.stop();
  await mesh?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** Runs the built CLI against this mesh; resolves with its stdout, rejects with its stderr. */
async function trellis(...args: string[]): Promise<string> {
  const env = {
    ...process.env,
    TRELLIS_REGISTRY_URL: mesh.registryUrl,
    TRELLIS_CONTROL_PLANE_URL: mesh.controlPlane.httpUrl,
    TRELLIS_TOKEN: mesh.adminToken,
    TRELLIS_CONFIG: join(dataDir, 'no-such-config.yaml'),
  };
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [join(WORKSPACE_ROOT, 'dist/apps/cli/main.js'), ...args], { env });
    return stdout;
  } catch (err) {
    throw new Error(`trellis ${args.join(' ')}: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`);
  }
}

describe('trellis CLI', () => {
  it('apply -f DIR is idempotent: the first run creates, --dry-run shows a diff, a second run changes nothing and says so', async () => {
    const dir = join(dataDir, 'manifests');
    mkdirSync(join(dir, 'nested'), { recursive: true });
    writeFileSync(join(dir, 'ledger.yaml'), 'name: ledger\nteam: echo\nprotocol: grpc\nport: 50051\n');
    writeFileSync(
      join(dir, 'nested', 'billing.yml'),
      'name: billing\nteam: echo\nprotocol: grpc\nport: 50051\ndependencies:\n  - service: ledger\n---\nname: audit\nteam: echo\nprotocol: http\nport: 8080\n',
    );
    expect(await trellis('apply', '-f', dir)).toMatch(/service\/ledger created[\s\S]*3 created, 0 changed, 0 unchanged/);
    expect(await trellis('apply', '-f', dir)).toContain('no changes: 3 services already as declared');

    writeFileSync(join(dir, 'ledger.yaml'), 'name: ledger\nteam: echo\nprotocol: grpc\nport: 50052\n');
    const dryRun = await trellis('apply', '-f', dir, '--dry-run');
    expect(dryRun).toContain('service/ledger would be configured');
    expect(dryRun).toMatch(/- port: 50051\n\s+\+ port: 50052/);
    expect(JSON.parse(await trellis('services', 'get', 'ledger', '-o', 'json')).spec.port).toBe(50051);
    expect(await trellis('apply', '-f', dir)).toContain('0 created, 1 changed, 2 unchanged');
    expect(await trellis('apply', '-f', dir)).toContain('no changes');

    expect(await trellis('services', 'ls')).toMatch(/NAME\s+TEAM[\s\S]*billing\s+echo\s+grpc\s+50051\s+off\s+ledger/);
    expect(await trellis('services', 'history', 'ledger')).toMatch(/2\s+update[\s\S]*1\s+create/);
    await trellis('services', 'rollback', 'ledger', '--to', '1');
    expect(JSON.parse(await trellis('services', 'get', 'ledger', '-o', 'json')).spec.port).toBe(50051);
    expect(await trellis('topology', '-o', 'dot')).toContain('"billing" -> "ledger";');
  });

  it('proxy-status shows a NACK with its message after a proxy rejects its config', async () => {
    // A real ADS stream to the real control plane, as a proxy of "caller" that rejects what it gets.
    const ads = new AggregatedDiscoveryServiceClient(mesh.controlPlane.xdsAddress, credentials.createInsecure());
    const stream = ads.streamAggregatedResources();
    const clusterType = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
    const node = { id: 'nacker-1', cluster: 'caller' };
    try {
      const first = new Promise<DiscoveryResponse>((resolve, reject) => {
        stream.once('data', resolve);
        stream.once('error', reject);
      });
      stream.write(DiscoveryRequest.fromPartial({ node, typeUrl: clusterType, resourceNames: [] }));
      const response = await first;
      stream.write(
        DiscoveryRequest.fromPartial({
          node,
          typeUrl: clusterType,
          versionInfo: '',
          responseNonce: response.nonce,
          errorDetail: { code: 3, message: 'cluster outbound|echo: rejected by the test proxy' },
        }),
      );
      const table = await eventually('the NACK in proxy-status', async () => {
        const out = await trellis('proxy-status', 'caller');
        return out.includes('nacker-1') && out.includes('NACKED') ? out : undefined;
      });
      expect(table).toMatch(/NAME\s+SERVICE\s+CONTROL PLANE\s+CDS\s+LDS/);
      expect(table).toContain('CDS: cluster outbound|echo: rejected by the test proxy');
      const json = JSON.parse(await trellis('proxy-status', 'caller', '-o', 'json')) as Array<{ nodeId: string; sync: { cds: string } }>;
      expect(json.find((p) => p.nodeId === 'nacker-1')?.sync.cds).toBe('NACKED');
    } finally {
      stream.end();
      ads.close();
    }
  });

  it('config-dump, instances ls and bootstrap read the live mesh', async () => {
    const dump = JSON.parse(await trellis('config-dump', 'caller-1', '-o', 'json')) as { types: Record<string, unknown> };
    expect(Object.keys(dump.types)).toEqual(expect.arrayContaining(['cds', 'lds']));
    expect(await trellis('config-dump', 'caller-1')).toMatch(/TYPE\s+NAME\s+VERSION/);
    expect(await trellis('instances', 'ls', 'echo')).toMatch(/^ID\s+ADDRESS\s+STATE/);
    const bootstrap = await trellis('bootstrap', 'echo', '--app-port', '9000', '--node', 'echo-vm-1', '--format', 'json');
    expect(JSON.parse(bootstrap).node).toMatchObject({ id: 'echo-vm-1', cluster: 'echo' });
  });
});

describe('trellis agent', () => {
  let echo1: ManagedProcess;
  let unhealthy1: string;

  it('registers the instance only once its health check passes; proxyless calls then reach it', async () => {
    unhealthy1 = join(dataDir, 'echo-1.unhealthy');
    writeFileSync(unhealthy1, '');
    echo1 = await startAgent('echo-1', unhealthy1);
    await appPidOf(echo1);
    await echo1.waitForLine(/does not pass its health check yet/, 30_000);
    expect(await hasInstance('echo-1')).toBe(false);

    unlinkSync(unhealthy1);
    await eventually('echo-1 registered', () => hasInstance('echo-1'));
    const since = windows.length;
    await eventually('the caller reaches echo-1', async () => answeredBy('echo-1', since));
  });

  it('withdraws the instance when its health check fails and registers it again when it recovers', async () => {
    writeFileSync(unhealthy1, '');
    await eventually('echo-1 withdrawn', async () => !(await hasInstance('echo-1')));
    expect(echo1.child.exitCode).toBeNull();

    unlinkSync(unhealthy1);
    await eventually('echo-1 registered again', () => hasInstance('echo-1'));
    const since = windows.length;
    await eventually('the caller reaches echo-1 again', async () => answeredBy('echo-1', since));
  });

  it('drains on SIGTERM under steady traffic: not one call fails, then the instance is gone and the agent exits 0', async () => {
    const echo2 = await startAgent('echo-2', join(dataDir, 'echo-2.unhealthy'));
    await appPidOf(echo2);
    await eventually('echo-2 registered', () => hasInstance('echo-2'));
    let since = windows.length;
    await eventually('the caller reaches both instances', async () => answeredBy('echo-1', since) && answeredBy('echo-2', since));

    since = windows.length;
    let sawDraining = false;
    const watchDraining = setInterval(() => {
      void instances().then(
        (items) => (sawDraining ||= items.some((i) => i.id === 'echo-1' && i.drainingSince)),
        () => undefined,
      );
    }, 200);
    echo1.child.kill('SIGTERM');
    const code = await echo1.exited;
    clearInterval(watchDraining);
    expect(code).toBe(0);
    expect(sawDraining).toBe(true);
    expect(await hasInstance('echo-1')).toBe(false);
    // Two more whole windows after the app stopped.
    const end = windows.length + 2;
    await eventually('two more call windows', async () => windows.length >= end);

    const during = windows.slice(since);
    const calls = during.reduce((sum, w) => sum + w.ok + w.failed, 0);
    const failed = during.reduce((sum, w) => sum + w.failed, 0);
    process.stdout.write(`[agent-e2e] SIGTERM under load: ${calls} calls over ${during.length} s, ${failed} failed\n`);
    expect(during.flatMap((w) => w.errors)).toEqual([]);
    expect(failed).toBe(0);
    expect(calls).toBeGreaterThan(0);
  });

  it('an agent killed with SIGKILL leaves no instance behind once its lease runs out', async () => {
    const echo2 = agents.get('echo-2')!;
    echo2.child.kill('SIGKILL');
    await echo2.exited;
    await eventually('echo-2 gone (its 5 s lease expired)', async () => !(await hasInstance('echo-2')));
  });

  it('keeps running while etcd is stopped for 30 s, and the instance is registered again once etcd is back', async () => {
    const echo3 = await startAgent('echo-3', join(dataDir, 'echo-3.unhealthy'));
    await appPidOf(echo3);
    await eventually('echo-3 registered', () => hasInstance('echo-3'));

    const etcd = mesh.processes.find((p) => p.name === 'etcd')!;
    etcd.child.kill('SIGSTOP');
    try {
      await new Promise((resolve) => setTimeout(resolve, 30_000));
      expect(echo3.child.exitCode).toBeNull();
    } finally {
      etcd.child.kill('SIGCONT');
    }
    await echo3.waitForLine(/registry unreachable; retrying|the registry refused/, 5_000);
    await eventually('echo-3 registered after the outage', () => hasInstance('echo-3'), 90_000);
    expect(echo3.child.exitCode).toBeNull();
  });
});
