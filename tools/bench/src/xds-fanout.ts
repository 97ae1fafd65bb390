// The benchmark proper (see ../xds-fanout.mjs). Four roles in one file, each its own process:
//   (no role)        orchestrator: etcd, the registry writes, rounds, the table
//   --role cp        the control plane (startControlPlane) against that etcd
//   --role floor     a bare grpc-js bidi-stream server: on an etcd watch event for `hub`, one small
//                    message to each affected stream — the floor for "etcd write → watch → N streams"
//   --role clients   P SotW ADS streams to one of the two, ACKing every response, timing arrivals
// Times cross processes as performance.timeOrigin + performance.now() (wall-clock based, sub-ms).
import { fork, type ChildProcess } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { credentials, Server, ServerCredentials, type ClientDuplexStream, type ServerDuplexStream } from '@grpc/grpc-js';
import { TypeUrl } from '@trellis/envoy-types';
import { Node } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { AggregatedDiscoveryServiceClient, AggregatedDiscoveryServiceService } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { DiscoveryRequest, DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { connectEtcd, etcdOptionsFromEnv, KeyLayout, MeshStore, type ServiceSpecInput } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { startEtcd } from '@trellis/testing';
import { startControlPlane } from '../../../apps/control-plane/src/control-plane';
import { loadControlPlaneConfig } from '../../../apps/control-plane/src/config';

const { values: args } = parseArgs({
  options: {
    role: { type: 'string' },
    services: { type: 'string', default: '10000' },
    proxies: { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '5' },
    // Every n-th service declares `hub` as a dependency (the rest call their neighbour).
    'hub-every': { type: 'string', default: '3' },
    // TCP connections the client process spreads its streams over.
    connections: { type: 'string', default: '50' },
    // How long to keep listening after the last affected stream got its push, to catch extra pushes.
    'settle-ms': { type: 'string', default: '1500' },
    // The control plane's TRELLIS_XDS_DEBOUNCE_MS (its default: 100); 0 shows the cost without the deliberate hold-off.
    'debounce-ms': { type: 'string', default: '100' },
    // Write a V8 CPU profile of the control plane process into this directory (node --cpu-prof).
    'cpu-prof-dir': { type: 'string' },
    // Set by the orchestrator for the server roles.
    'etcd-endpoints': { type: 'string' },
    'etcd-prefix': { type: 'string' },
    target: { type: 'string' },
  },
});

const SERVICES = Number(args.services);
const PROXIES = Number(args.proxies);
const ROUNDS = Number(args.rounds);
const HUB_EVERY = Number(args['hub-every']);
const CONNECTIONS = Number(args.connections);
const SETTLE_MS = Number(args['settle-ms']);
const ROUND_TIMEOUT_MS = 60_000;

const now = (): number => performance.timeOrigin + performance.now();
const serviceName = (i: number): string => `svc-${i}`;
const callsHub = (service: string): boolean => Number(service.slice(4)) % HUB_EVERY === 0;
/** Proxy p runs as an instance of service p mod S. */
const proxyService = (p: number): string => serviceName(p % SERVICES);
const hubSpec = (maxConnections: number): ServiceSpecInput => ({
  name: 'hub',
  team: 'core',
  protocol: 'http',
  port: 8080,
  policy: { circuitBreaker: { maxConnections } },
});

// ---- messages between the orchestrator and the clients process (IPC) ----
type ToClients = { type: 'arm' } | { type: 'collect' } | { type: 'close' };
type FromClients =
  | { type: 'connected'; ms: number }
  | { type: 'armed' }
  | { type: 'all-affected-received' }
  | { type: 'round'; arrivals: number[]; missing: number; extraToAffected: number; toUnaffected: number; staleVersion: number };
type FromServer = { type: 'ready'; grpcPort: number; httpPort?: number };

// ---- role: control plane ----
async function controlPlaneRole(): Promise<void> {
  const config = loadControlPlaneConfig({
    TRELLIS_ETCD_ENDPOINTS: args['etcd-endpoints'],
    TRELLIS_ETCD_PREFIX: args['etcd-prefix'],
    TRELLIS_HOST: '127.0.0.1',
    TRELLIS_XDS_PORT: '0',
    TRELLIS_HTTP_PORT: '0',
    TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: 'true',
    TRELLIS_CONTROL_PLANE_ID: 'cp-bench',
    TRELLIS_XDS_DEBOUNCE_MS: args['debounce-ms'],
  });
  const etcd = connectEtcd(etcdOptionsFromEnv(config));
  const cp = await startControlPlane({
    config,
    etcd,
    layout: new KeyLayout(config.TRELLIS_ETCD_PREFIX),
    logger: createLogger('control-plane', 'warn'),
  });
  await cp.watcher.whenReady();
  while (!cp.cache.ready) await sleep(50);
  tell({ type: 'ready', grpcPort: cp.xdsPort, httpPort: cp.httpPort } satisfies FromServer);
  await untilTerminated();
  await cp.close();
  etcd.close();
  // Exit now rather than when the last handle closes (a --cpu-prof profile is written on exit).
  process.exit(0);
}

// ---- role: floor ----
async function floorRole(): Promise<void> {
  const layout = new KeyLayout(args['etcd-prefix']!);
  const etcd = connectEtcd({ endpoints: args['etcd-endpoints']!.split(',') });
  type Stream = ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;
  const affected = new Set<Stream>();
  let nonce = 0;
  const server = new Server();
  server.addService(AggregatedDiscoveryServiceService, {
    streamAggregatedResources: (call: Stream) => {
      call.on('data', (request: DiscoveryRequest) => {
        // The first request names the proxy; later ones are ACKs.
        if (request.responseNonce !== '') return;
        if (request.node && callsHub(request.node.cluster)) affected.add(call);
        call.write(DiscoveryResponse.fromPartial({ versionInfo: '0', typeUrl: request.typeUrl, nonce: String(++nonce) }));
      });
      call.on('error', () => affected.delete(call));
      call.on('end', () => {
        affected.delete(call);
        call.end();
      });
    },
    deltaAggregatedResources: (call: ServerDuplexStream<unknown, unknown>) => call.end(),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const watcher = await etcd.watch().key(layout.service('hub')).create();
  watcher.on('put', (kv) => {
    const message = DiscoveryResponse.fromPartial({ versionInfo: kv.mod_revision, typeUrl: TypeUrl.Cluster, nonce: String(++nonce) });
    for (const call of affected) call.write(message);
  });
  tell({ type: 'ready', grpcPort: port } satisfies FromServer);
  await untilTerminated();
  await watcher.cancel();
  server.forceShutdown();
  etcd.close();
}

// ---- role: clients ----
async function clientsRole(): Promise<void> {
  const target = args.target!;
  const channels = Array.from(
    { length: Math.max(1, Math.min(CONNECTIONS, PROXIES)) },
    // A local subchannel pool per client gives each its own TCP connection.
    () => new AggregatedDiscoveryServiceClient(target, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }),
  );
  interface Proxy {
    affected: boolean;
    version: string;
    /** Arrival times of responses since the round was armed. */
    arrivals: number[];
    versions: string[];
  }
  const proxies: Proxy[] = [];
  let armed = false;
  let connected = 0;
  let affectedReceived = 0;
  const affectedCount = Array.from({ length: PROXIES }, (_, p) => callsHub(proxyService(p))).filter(Boolean).length;
  const started = now();
  for (let p = 0; p < PROXIES; p++) {
    const service = proxyService(p);
    const proxy: Proxy = { affected: callsHub(service), version: '', arrivals: [], versions: [] };
    proxies.push(proxy);
    const call = channels[p % channels.length]!.streamAggregatedResources() as ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;
    call.on('data', (response: DiscoveryResponse) => {
      const at = now();
      // ACK every response, as Envoy does.
      call.write(
        DiscoveryRequest.fromPartial({ typeUrl: response.typeUrl, versionInfo: response.versionInfo, responseNonce: response.nonce }),
      );
      if (proxy.version === '') {
        proxy.version = response.versionInfo;
        if (++connected === PROXIES) tell({ type: 'connected', ms: now() - started } satisfies FromClients);
        return;
      }
      if (!armed) return;
      proxy.arrivals.push(at);
      proxy.versions.push(response.versionInfo);
      if (proxy.affected && proxy.arrivals.length === 1 && ++affectedReceived === affectedCount)
        tell({ type: 'all-affected-received' } satisfies FromClients);
    });
    call.on('error', (err) => {
      console.error(`proxy ${p} (${service}): stream failed: ${err.message}`);
      process.exit(2);
    });
    call.write(
      DiscoveryRequest.fromPartial({
        node: Node.fromPartial({ id: `${service}-${p}`, cluster: service, userAgentName: 'envoy' }),
        typeUrl: TypeUrl.Cluster,
      }),
    );
  }
  process.on('message', (message: ToClients) => {
    if (message.type === 'arm') {
      for (const proxy of proxies) {
        proxy.arrivals = [];
        proxy.versions = [];
      }
      affectedReceived = 0;
      armed = true;
      tell({ type: 'armed' } satisfies FromClients);
    } else if (message.type === 'collect') {
      armed = false;
      const result: Extract<FromClients, { type: 'round' }> = {
        type: 'round',
        arrivals: [],
        missing: 0,
        extraToAffected: 0,
        toUnaffected: 0,
        staleVersion: 0,
      };
      for (const proxy of proxies) {
        if (!proxy.affected) {
          result.toUnaffected += proxy.arrivals.length;
          continue;
        }
        if (proxy.arrivals.length === 0) {
          result.missing++;
          continue;
        }
        result.arrivals.push(proxy.arrivals[0]!);
        result.extraToAffected += proxy.arrivals.length - 1;
        if (proxy.versions[0] === proxy.version) result.staleVersion++;
        proxy.version = proxy.versions.at(-1)!;
      }
      tell(result);
    } else {
      for (const channel of channels) channel.close();
      process.exit(0);
    }
  });
}

// ---- orchestrator ----
interface RoundResult {
  latenciesMs: number[];
  missing: number;
  extraToAffected: number;
  toUnaffected: number;
  staleVersion: number;
}

interface PhaseResult {
  name: string;
  connectMs: number;
  rounds: RoundResult[];
}

class Child {
  private readonly inbox: unknown[] = [];
  private readonly waiters: ((m: unknown) => void)[] = [];
  readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    readonly process: ChildProcess,
  ) {
    process.on('message', (m) => {
      const waiter = this.waiters.shift();
      if (waiter) waiter(m);
      else this.inbox.push(m);
    });
    this.exited = new Promise((resolve) => process.once('exit', resolve));
  }

  static fork(name: string, roleArgs: string[], execArgv: string[] = []): Child {
    return new Child(
      name,
      fork(process.argv[1]!, roleArgs, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [...process.execArgv, ...execArgv] }),
    );
  }

  send(message: ToClients): void {
    this.process.send(message);
  }

  /** The next message of `type`, failing if the process exits or `timeoutMs` passes first. */
  async next<T extends { type: string }>(type: T['type'], timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = this.inbox.shift() ?? (await this.receive(deadline - Date.now()));
      if (message === TIMEOUT) throw new Error(`${this.name}: no '${type}' within ${timeoutMs} ms`);
      if ((message as { type: string }).type === type) return message as T;
    }
  }

  /** The next message to arrive; a timed-out wait takes its waiter back so no later message is lost to it. */
  private receive(timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const waiter = (m: unknown): void => {
        clearTimeout(timer);
        resolve(m);
      };
      const timer = setTimeout(
        () => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          resolve(TIMEOUT);
        },
        Math.max(0, timeoutMs),
      );
      this.waiters.push(waiter);
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited with ${code}`));
      });
    });
  }

  async stop(): Promise<void> {
    if (this.process.exitCode !== null) return;
    this.process.kill('SIGTERM');
    const killed = setTimeout(() => this.process.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(killed);
  }
}
const TIMEOUT = Symbol('timeout');

function commonArgs(): string[] {
  return [
    '--services',
    String(SERVICES),
    '--proxies',
    String(PROXIES),
    '--hub-every',
    String(HUB_EVERY),
    '--connections',
    String(CONNECTIONS),
    '--debounce-ms',
    args['debounce-ms']!,
  ];
}

async function rebuildSeconds(httpPort: number): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const read = (what: string) =>
    Number(new RegExp(`^trellis_control_plane_rebuild_seconds_${what}\\{reset="false"\\} ([\\d.e+-]+)`, 'm').exec(text)?.[1] ?? 0);
  return { sum: read('sum'), count: read('count') };
}

async function runPhase(name: string, grpcPort: number, store: MeshStore, firstMaxConnections: number): Promise<PhaseResult> {
  const clients = Child.fork('clients', ['--role', 'clients', '--target', `127.0.0.1:${grpcPort}`, ...commonArgs()]);
  try {
    const { ms: connectMs } = await clients.next<Extract<FromClients, { type: 'connected' }>>('connected', 600_000);
    console.log(`${name}: ${PROXIES} streams got their first response in ${(connectMs / 1000).toFixed(1)} s`);
    const rounds: RoundResult[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      await sleep(SETTLE_MS); // let ACKs and proxy-status writes of the previous round drain
      clients.send({ type: 'arm' });
      await clients.next('armed', 10_000);
      const t0 = now();
      await store.updateService(hubSpec(firstMaxConnections + round), 'bench');
      await clients
        .next('all-affected-received', ROUND_TIMEOUT_MS)
        .catch((err: Error) => console.error(`${name} round ${round + 1}: ${err.message}`));
      await sleep(SETTLE_MS);
      clients.send({ type: 'collect' });
      const r = await clients.next<Extract<FromClients, { type: 'round' }>>('round', 30_000);
      const latenciesMs = r.arrivals.map((at) => at - t0).sort((a, b) => a - b);
      rounds.push({
        latenciesMs,
        missing: r.missing,
        extraToAffected: r.extraToAffected,
        toUnaffected: r.toUnaffected,
        staleVersion: r.staleVersion,
      });
      console.log(
        `${name} round ${round + 1}: p50 ${fmt(pct(latenciesMs, 0.5))} p99 ${fmt(pct(latenciesMs, 0.99))} max ${fmt(latenciesMs.at(-1))} ms; ` +
          `${latenciesMs.length} pushed, ${r.missing} missing, ${r.extraToAffected} extra, ${r.toUnaffected} to unaffected, ${r.staleVersion} same version`,
      );
    }
    return { name, connectMs, rounds };
  } finally {
    if (clients.process.connected) clients.send({ type: 'close' });
    await clients.exited;
  }
}

async function orchestrate(): Promise<void> {
  const affected = Array.from({ length: PROXIES }, (_, p) => callsHub(proxyService(p))).filter(Boolean).length;
  console.log(
    `${SERVICES} services (every ${HUB_EVERY}${HUB_EVERY === 2 ? 'nd' : HUB_EVERY === 3 ? 'rd' : 'th'} calls hub), ${PROXIES} SotW ADS streams over ${CONNECTIONS} connections ` +
      `(${affected} affected by a hub change), ${ROUNDS} rounds; ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(1)}`,
  );
  const etcd = await startEtcd();
  const layout = new KeyLayout(etcd.prefix);
  const client = etcd.client();
  const store = new MeshStore(client, layout);
  const children: Child[] = [];
  let failed = false;
  try {
    const seeding = now();
    await store.ensureMeshSettings({ tokenIssuer: 'trellis', clockSkewSeconds: 30 });
    await store.createService(hubSpec(1000), 'bench');
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        for (let i = next++; i < SERVICES; i = next++) {
          const dependency = callsHub(serviceName(i)) ? 'hub' : serviceName((i + 1) % SERVICES);
          await store.createService(
            { name: serviceName(i), team: 'core', protocol: 'http', port: 8080, dependencies: [{ service: dependency }] },
            'bench',
          );
        }
      }),
    );
    console.log(`registered ${SERVICES + 1} services in ${((now() - seeding) / 1000).toFixed(1)} s`);
    const serverArgs = ['--etcd-endpoints', etcd.endpoints.join(','), '--etcd-prefix', etcd.prefix, ...commonArgs()];

    // The floor first, then the control plane: both react to every hub write, so they do not run side by side.
    const floor = Child.fork('floor', ['--role', 'floor', ...serverArgs]);
    children.push(floor);
    const floorReady = await floor.next<FromServer>('ready', 600_000);
    const floorResult = await runPhase('floor', floorReady.grpcPort, store, 2000);
    await floor.stop();

    const profile = args['cpu-prof-dir'] ? ['--cpu-prof', '--cpu-prof-dir', args['cpu-prof-dir']] : [];
    const cp = Child.fork('control plane', ['--role', 'cp', ...serverArgs], profile);
    children.push(cp);
    const { grpcPort, httpPort } = await cp.next<FromServer>('ready', 600_000);
    const before = await rebuildSeconds(httpPort!);
    const cpResult = await runPhase('control plane', grpcPort, store, 3000);
    const after = await rebuildSeconds(httpPort!);
    await cp.stop();

    failed = report(floorResult, cpResult, { sum: after.sum - before.sum, count: after.count - before.count }, affected);
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    client.close();
    await etcd.close();
  }
  process.exit(failed ? 1 : 0);
}

/** Prints the table; returns true if a push was missing or extra. */
function report(floor: PhaseResult, cp: PhaseResult, rebuild: { sum: number; count: number }, affected: number): boolean {
  const all = (phase: PhaseResult) => phase.rounds.flatMap((r) => r.latenciesMs).sort((a, b) => a - b);
  const per = (phase: PhaseResult, q: number) => median(phase.rounds.map((r) => pct(r.latenciesMs, q)));
  const f = all(floor);
  const c = all(cp);
  const rows: [string, string, string, string][] = [
    ['', 'floor (bare grpc-js)', 'control plane', 'control plane / floor'],
    ['p50, all rounds', fmt(pct(f, 0.5)), fmt(pct(c, 0.5)), ratio(pct(c, 0.5), pct(f, 0.5))],
    ['p99, all rounds', fmt(pct(f, 0.99)), fmt(pct(c, 0.99)), ratio(pct(c, 0.99), pct(f, 0.99))],
    ['max', fmt(f.at(-1)), fmt(c.at(-1)), ratio(c.at(-1), f.at(-1))],
    ['p50, median of rounds', fmt(per(floor, 0.5)), fmt(per(cp, 0.5)), ratio(per(cp, 0.5), per(floor, 0.5))],
    ['p99, median of rounds', fmt(per(floor, 0.99)), fmt(per(cp, 0.99)), ratio(per(cp, 0.99), per(floor, 0.99))],
    ['first response to all', fmt(floor.connectMs), fmt(cp.connectMs), ratio(cp.connectMs, floor.connectMs)],
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log('\nhub write → push received, ms');
  for (const row of rows) console.log(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
  console.log(
    `control plane rebuilds during the rounds: ${rebuild.count}, mean ${rebuild.count > 0 ? ((1000 * rebuild.sum) / rebuild.count).toFixed(1) : '—'} ms ` +
      `(trellis_control_plane_rebuild_seconds; the debounce window of ${args['debounce-ms']} ms comes before it)`,
  );
  let failed = false;
  for (const phase of [floor, cp]) {
    const totals = phase.rounds.reduce(
      (t, r) => ({
        pushed: t.pushed + r.latenciesMs.length,
        missing: t.missing + r.missing,
        extra: t.extra + r.extraToAffected,
        unaffected: t.unaffected + r.toUnaffected,
        stale: t.stale + r.staleVersion,
      }),
      { pushed: 0, missing: 0, extra: 0, unaffected: 0, stale: 0 },
    );
    const ok = totals.missing === 0 && totals.extra === 0 && totals.unaffected === 0 && totals.stale === 0;
    console.log(
      `${phase.name}: ${totals.pushed}/${affected * phase.rounds.length} pushes received, ${totals.missing} missing, ${totals.extra} extra to affected, ` +
        `${totals.unaffected} to unaffected, ${totals.stale} without a new version — ${ok ? 'correct' : 'FAILED'}`,
    );
    failed ||= !ok;
  }
  return failed;
}

function pct(sorted: number[], q: number): number | undefined {
  return sorted.length === 0 ? undefined : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function median(xs: (number | undefined)[]): number | undefined {
  const defined = xs.filter((x): x is number => x !== undefined).sort((a, b) => a - b);
  return defined[Math.floor(defined.length / 2)];
}

function fmt(ms: number | undefined): string {
  return ms === undefined ? '—' : ms >= 100 ? ms.toFixed(0) : ms.toFixed(1);
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || b === 0 ? '—' : `${(a / b).toFixed(2)}×`;
}

function tell(message: FromClients | FromServer): void {
  process.send!(message);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function untilTerminated(): Promise<void> {
  return new Promise((resolve) => process.once('SIGTERM', () => resolve()));
}

const role = args.role;
(role === 'cp' ? controlPlaneRole() : role === 'floor' ? floorRole() : role === 'clients' ? clientsRole() : orchestrate()).catch(
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
