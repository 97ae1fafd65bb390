// Runs the demo topology on a local mesh: registers the services through the
// registry's REST API (as an engineer or CI would), starts each instance as a
// proxyless gRPC process, and calls the entry point as the edge would.
import { credentials, Metadata } from '@grpc/grpc-js';
import { HopClient, type HopRecord } from '@trellis/envoy-types/trellis/demo/v1/hop';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LocalMesh } from '../mesh';
import { startProcess, type ManagedProcess, type StartOptions } from '../processes';
import { DEMO_TOPOLOGY, demoServiceSpec, type DemoService } from './topology';

export interface DemoCredentials {
  /** The file authz reads (TRELLIS_TOKEN_ENDPOINT_CREDENTIALS): `service:secret` per line. */
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
  for (const service of topology) {
    const res = await fetch(`${mesh.registryUrl}/api/v1/services/${service.name}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${mesh.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(demoServiceSpec(service)),
    });
    // 412/428 means it exists from an earlier run (data persists in .trellis/); keep it.
    if (!res.ok && res.status !== 412 && res.status !== 428)
      throw new Error(`registering ${service.name}: ${res.status} ${await res.text()}`);
  }

  const processes: ManagedProcess[] = [];
  const ports = new Map<string, number>();
  const stopAll = () => Promise.all(processes.map((p) => p.stop()));
  try {
    const started = topology.flatMap((service) =>
      Array.from({ length: service.instances }, (_, i) => {
        const proc = startProcess({
          name: `${service.name}-${i + 1}`,
          command: process.execPath,
          args: ['--enable-source-maps', options.demoServiceScript],
          env: {
            DEMO_SERVICE: service.name,
            DEMO_INSTANCE_ID: `${service.name}-${i + 1}`,
            DEMO_DEPENDENCIES: service.dependencies.join(','),
            DEMO_PUBLIC: String(Boolean(service.public)),
            TRELLIS_REGISTRY_URL: mesh.registryUrl,
            TRELLIS_ADMIN_TOKEN: mesh.adminToken,
            TRELLIS_AUTHZ_URL: mesh.authz.httpUrl,
            TRELLIS_SERVICE_SECRET: creds.secrets.get(service.name)!,
            TRELLIS_XDS_SERVER: mesh.controlPlane.xdsAddress,
          },
          onLine: options.onLine,
        });
        processes.push(proc);
        return proc;
      }),
    );
    // Each instance says where it serves once it is registered; a crash fails the start with its output.
    for (const proc of started) {
      const line = await proc.waitForLine(/"msg":"serving and registered"/, 30_000);
      ports.set(proc.name, (JSON.parse(line) as { port: number }).port);
    }
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
        entryClient.call({ origin: 'edge' }, new Metadata(), { deadline: Date.now() + 5_000 }, (err, reply) =>
          err ? reject(new Error(err.details || err.message)) : resolve(reply!.hops),
        ),
      ),
    async stop() {
      entryClient.close();
      await stopAll();
    },
  };
}

/** `edge → front(front-1) → service-a(service-a-1, token front→service-a kid …) …` */
export function describeHops(hops: HopRecord[]): string {
  return hops
    .map((h) =>
      h.caller
        ? `${h.caller} → ${h.service} [${h.instance}] token sub=${h.caller} aud=${h.tokenAudience} kid=${h.tokenKeyId.slice(0, 8)}…`
        : `edge → ${h.service} [${h.instance}]`,
    )
    .join('\n    ');
}
