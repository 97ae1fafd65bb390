// Runs the demo topology on a local mesh: registers the services through the
// registry's REST API (as an engineer or CI would), starts each instance as a
// proxyless gRPC process under `trellis agent` (which registers it once healthy,
// heartbeats and drains it), and calls the entry point as the edge would.
import { credentials, Metadata } from '@grpc/grpc-js';
import { HopClient, type HopRecord } from '@trellis/envoy-types/trellis/demo/v1/hop';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WORKSPACE_ROOT, type LocalMesh } from '../mesh';
import { freePort } from '../ports';
import { startProcess, type ManagedProcess, type StartOptions } from '../processes';
import { DEMO_TOPOLOGY, demoMtlsMode, demoServiceSpec, type DemoService } from './topology';

export interface DemoCredentials {
  /**
   * `service:secret` per line: authz takes them on POST /v1/token (TRELLIS_TOKEN_ENDPOINT_CREDENTIALS),
   * the registry from each service's agent (TRELLIS_SERVICE_CREDENTIALS).
   */
  file: string;
  secrets: Map<string, string>;
}

/** Written before authz starts: each demo service's credential for the token endpoint. */
export function writeDemoCredentials(dataDir: string, topology: DemoService[] = DEMO_TOPOLOGY): DemoCredentials {
  const secrets = new Map(topology.map((s) => [s.name, randomBytes(24).toString('base64url')]));
  const dir = join(dataDir, 'demo');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, 'token-endpoint-credentials');
  writeFileSync(file, [...secrets].map(([service, secret]) => `${service}:${secret}`).join('\n') + '\n', { mode: 0o600 });
  return { file, secrets };
}

export interface Demo {
  processes: ManagedProcess[];
  /** One request from the edge into `front`; resolves with the hops it took. */
  callEntry(): Promise<HopRecord[]>;
  stop(): Promise<void>;
}

export async function startDemo(
  mesh: LocalMesh,
  creds: DemoCredentials,
  options: { demoServiceScript: string; onLine?: StartOptions['onLine']; topology?: DemoService[] },
): Promise<Demo> {
  const topology = options.topology ?? DEMO_TOPOLOGY;
  const { mtls } = mesh;
  // Each registry call has a deadline (fetch alone waits 300 s for an answer): a stuck one fails the start, saying which.
  const fetch = (url: string, init: RequestInit = {}) =>
    globalThis.fetch(url, { ...init, signal: AbortSignal.timeout(30_000) }).catch((err: Error) => {
      throw new Error(`${init.method ?? 'GET'} ${url}: ${err.message}`, { cause: err });
    });
  for (const service of topology) {
    const url = `${mesh.registryUrl}/api/v1/services/${service.name}`;
    const headers = { authorization: `Bearer ${mesh.adminToken}`, 'content-type': 'application/json' };
    const res = await fetch(url, { method: 'PUT', headers, body: JSON.stringify(demoServiceSpec(service, undefined, mtls)) });
    // 412/428 means it exists from an earlier run (data persists in .trellis/); keep it, but in this run's mTLS mode.
    if (res.status === 412 || res.status === 428) {
      const current = await fetch(url, { headers });
      const { spec } = (await current.json()) as { spec: Record<string, unknown> };
      const mode = demoMtlsMode(service, mtls);
      if ((spec['mtls'] ?? 'off') !== mode) {
        const updated = await fetch(url, {
          method: 'PUT',
          headers: { ...headers, 'if-match': current.headers.get('etag')! },
          body: JSON.stringify({ ...spec, mtls: mode }),
        });
        if (!updated.ok) throw new Error(`setting ${service.name} to mTLS ${mode}: ${updated.status} ${await updated.text()}`);
      }
    } else if (!res.ok) throw new Error(`registering ${service.name}: ${res.status} ${await res.text()}`);
  }

  const cli = join(WORKSPACE_ROOT, 'dist/apps/cli/main.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build it with \`npx nx build cli\``);
  const processes: ManagedProcess[] = [];
  const ports = new Map<string, number>();
  const stopAll = () => Promise.all(processes.map((p) => p.stop()));
  try {
    for (const service of topology) {
      for (let i = 1; i <= service.instances; i++) {
        const name = `${service.name}-${i}`;
        const port = await freePort();
        ports.set(name, port);
        // With mTLS the app's own port speaks TLS: the agent probes a plaintext health port instead.
        const relay = mtls ? { healthPort: await freePort(), relayPort: await freePort() } : undefined;
        processes.push(
          startDemoInstance(mesh, creds, {
            service,
            name,
            port,
            script: options.demoServiceScript,
            cli,
            onLine: options.onLine,
            ...(relay ? { relay } : {}),
          }),
        );
      }
    }
    // The agent says when its instance is registered (after its health check passed); a crash fails the start with its output.
    // Generous: on a loaded machine a demo app took 20 s to start serving (faults.test.ts timed out at 30 s, load 14).
    for (const proc of processes) await proc.waitForLine(/"msg":"instance registered"/, 120_000);
  } catch (err) {
    await stopAll();
    throw err;
  }

  const entry = topology.find((s) => s.public) ?? topology[0]!;
  const entryClient = new HopClient(`127.0.0.1:${ports.get(`${entry.name}-1`)}`, credentials.createInsecure());
  return {
    processes,
    callEntry: () =>
      new Promise((resolve, reject) =>
        entryClient.call({ origin: 'edge' }, new Metadata(), { deadline: Date.now() + 10_000 }, (err, reply) =>
          err ? reject(new Error(err.details || err.message)) : resolve(reply!.hops),
        ),
      ),
    async stop() {
      entryClient.close();
      await stopAll();
    },
  };
}

/**
 * `trellis agent … -- node demo-service.js`: the agent registers the instance with its
 * service's credential once the gRPC health check passes, and drains it on SIGTERM
 * before stopping the app.
 */
export function startDemoInstance(
  mesh: LocalMesh,
  creds: DemoCredentials,
  instance: {
    service: DemoService;
    name: string;
    port: number;
    script: string;
    cli: string;
    onLine?: StartOptions['onLine'];
    env?: NodeJS.ProcessEnv;
    /** mTLS between services: the agent relays the app's xDS on `relayPort` and probes its health on `healthPort`. */
    relay?: { healthPort: number; relayPort: number };
  },
): ManagedProcess {
  const { service, name, port, relay } = instance;
  const relayArgs = relay
    ? ['--xds-relay', `127.0.0.1:${relay.relayPort}`, '--grpc-bootstrap', join(mesh.dataDir, 'demo', 'bootstrap', `${name}.json`)]
    : [];
  return startProcess({
    name,
    command: process.execPath,
    args: [
      '--enable-source-maps',
      instance.cli,
      'agent',
      '--service',
      service.name,
      '--instance-id',
      name,
      '--address',
      '127.0.0.1',
      '--port',
      String(port),
      '--zone',
      'local',
      '--label',
      'version=v1',
      '--health-check',
      `grpc://127.0.0.1:${relay?.healthPort ?? port}`,
      ...relayArgs,
      '--http-port',
      '0',
      '--http-host',
      '127.0.0.1',
      '--',
      process.execPath,
      '--enable-source-maps',
      instance.script,
    ],
    env: {
      TRELLIS_REGISTRY_URL: mesh.registryUrl,
      TRELLIS_SERVICE_SECRET: creds.secrets.get(service.name)!,
      TRELLIS_TTL_SECONDS: '10',
      TRELLIS_DRAIN: '2s',
      TRELLIS_HEALTH_INTERVAL: '1s',
      DEMO_SERVICE: service.name,
      DEMO_INSTANCE_ID: name,
      DEMO_PORT: String(port),
      DEMO_DEPENDENCIES: service.dependencies.join(','),
      DEMO_PUBLIC: String(Boolean(service.public)),
      TRELLIS_AUTHZ_URL: mesh.authz.httpUrl,
      // The agent obtains the instance's workload certificate from the mesh CA into this folder before the app
      // starts, and renews it; the app presents it to authz's mTLS port for its tokens.
      TRELLIS_CERTIFICATE_DIR: demoCertificateDir(mesh, name),
      TRELLIS_AUTHZ_MTLS_URL: mesh.authz.mtlsUrl,
      TRELLIS_XDS_SERVER: mesh.controlPlane.xdsAddress,
      // The agent's relay names the control plane as its certificate does (an IP as the TLS server name is DEP0123).
      TRELLIS_XDS_SERVER_NAME: 'localhost',
      ...(relay ? { DEMO_MTLS: 'true', DEMO_HEALTH_PORT: String(relay.healthPort) } : {}),
      ...instance.env,
    },
    onLine: instance.onLine,
  });
}

/** Where an instance's agent keeps its workload certificate (sdk-node's certificate-files layout). */
export function demoCertificateDir(mesh: Pick<LocalMesh, 'dataDir'>, instance: string): string {
  return join(mesh.dataDir, 'demo', 'certificates', instance);
}

/** `edge → front [front-1] plaintext trace=…`, `front → service-a [service-a-1] mTLS peer=front (verified certificate) token sub=front aud=… kid=…` */
export function describeHops(hops: HopRecord[]): string {
  return hops
    .map((h) => {
      // The entry point started the request's trace; every hop after it continues the same one.
      if (!h.caller && !h.peerIdentity) return `edge → ${h.service} [${h.instance}] plaintext trace=${h.traceId.slice(0, 8)}…`;
      const peer = h.peerIdentity ? `mTLS peer=${h.peerIdentity} (verified certificate)` : 'plaintext';
      return `${h.caller || h.peerIdentity} → ${h.service} [${h.instance}] ${peer} token sub=${h.caller} aud=${h.tokenAudience} kid=${h.tokenKeyId.slice(0, 8)}…`;
    })
    .join('\n    ');
}
