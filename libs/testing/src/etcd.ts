// startEtcd(): a real etcd for integration tests, picked by environment:
// TRELLIS_TEST_ETCD_ENDPOINTS (shared etcd, own key prefix) > Docker
// (testcontainers) > the local `etcd` binary on free loopback ports.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExponentialBackoff, handleWhen, noop, retry, type IBackoff } from 'cockatiel';
import { Etcd3, isRecoverableError } from 'etcd3';
import { requireBinary } from './binaries';
import { ManagedProcess, waitUntil, withPortRetry } from './child-process';
import { dockerAvailable } from './docker';
import { freePort } from './ports';
import { unsupported } from './unsupported';

export interface TestEtcd {
  /** Client URLs, e.g. `http://127.0.0.1:40123`. */
  readonly endpoints: string[];
  /** A key prefix (`/trellis-test/<random>/`) no other suite uses: pass it to `new KeyLayout(prefix)`. */
  readonly prefix: string;
  /** Whether stop/start/restart work (false against a shared etcd or a container). */
  readonly canRestart: boolean;
  /**
   * A new client that rides out restarts (retries, no circuit breaker); closed by `close()`.
   * Code under test should connect with `connectEtcd({ endpoints })` from @trellis/mesh-schema instead.
   */
  client(): Etcd3;
  /** Compacts history up to `revision` (default: the current revision); returns the revision compacted at. */
  compact(revision?: string): Promise<string>;
  /** Stops the server, keeping its port and data. */
  stop(): Promise<void>;
  /** Starts a stopped server again on the same port with the same data. */
  start(): Promise<void>;
  restart(): Promise<void>;
  /**
   * Freezes the server (SIGSTOP) as a stalled disk or a paused VM would: its
   * sockets stay open and nothing answers. `resume()` (SIGCONT) thaws it; then
   * every lease whose TTL passed meanwhile expires at once.
   */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Closes clients, deletes this suite's keys or the whole server and its data. */
  close(): Promise<void>;
}

export interface StartEtcdOptions {
  /** Milliseconds to wait for the server to become healthy. */
  startTimeoutMs?: number;
  /** A server of this suite's own even when a shared etcd is configured (e.g. to enable auth on it). */
  exclusive?: boolean;
  /**
   * More etcd flags (e.g. `--auth-token=jwt,…`). Implies `exclusive`, and runs the local
   * `etcd` binary even where Docker answers: flags may name files on this machine.
   */
  extraArgs?: string[];
}

const ETCD_IMAGE = 'quay.io/coreos/etcd:v3.5.17';

export async function startEtcd(opts: StartEtcdOptions = {}): Promise<TestEtcd> {
  const prefix = `/trellis-test/${randomBytes(6).toString('hex')}/`;
  const shared = process.env['TRELLIS_TEST_ETCD_ENDPOINTS'];
  if (shared && !opts.exclusive && !opts.extraArgs)
    return sharedEtcd(
      shared
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
      prefix,
    );
  if (!opts.extraArgs && (await dockerAvailable())) return containerEtcd(prefix);
  return withPortRetry(() => localEtcd(prefix, opts.startTimeoutMs ?? 60_000, opts.extraArgs ?? []));
}

/**
 * A client for test setup and assertions. Kept independent of @trellis/mesh-schema
 * (whose own tests use this harness); like its connectEtcd it never holds a
 * breaker open after etcd returns, so fault tests can write right after start().
 */
function testClient(endpoints: string[]): Etcd3 {
  return new Etcd3({
    hosts: endpoints,
    dialTimeout: 5_000,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5_000 }),
    grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1_000 },
    faultHandling: {
      host: () => noop,
      global: retry(handleWhen(isRecoverableError), {
        maxAttempts: 5,
        backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1_000 }),
      }),
      // etcd3 calls `.next()` on this itself, as on its own default.
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1_000 }) as unknown as IBackoff<unknown>,
    },
  });
}

/** What every mode shares: client bookkeeping and compaction. */
function baseHandle(endpoints: string[]) {
  const clients = new Set<Etcd3>();
  const client = (): Etcd3 => {
    const c = testClient(endpoints);
    clients.add(c);
    return c;
  };
  let admin: Etcd3 | undefined;
  const adminClient = () => (admin ??= client());
  const compact = async (revision?: string): Promise<string> => {
    const etcd = adminClient();
    const target = revision ?? (await etcd.kv.range({ key: Buffer.from('\0'), limit: 1 })).header.revision;
    await etcd.kv.compact({ revision: target, physical: true });
    return target;
  };
  const closeClients = () => {
    for (const c of clients) c.close();
    clients.clear();
    admin = undefined;
  };
  return { client, adminClient, compact, closeClients };
}

/** An etcd this suite cannot stop or start (shared, or a container); `close` releases it. */
function unownedEtcd(
  endpoints: string[],
  prefix: string,
  why: string,
  close: (base: ReturnType<typeof baseHandle>) => Promise<void>,
): TestEtcd {
  const base = baseHandle(endpoints);
  return {
    endpoints,
    prefix,
    canRestart: false,
    client: base.client,
    compact: base.compact,
    stop: unsupported('stop()', why),
    start: unsupported('start()', why),
    restart: unsupported('restart()', why),
    pause: unsupported('pause()', why),
    resume: unsupported('resume()', why),
    close: () => close(base),
  };
}

function sharedEtcd(endpoints: string[], prefix: string): TestEtcd {
  return unownedEtcd(endpoints, prefix, 'against TRELLIS_TEST_ETCD_ENDPOINTS (a shared etcd)', async (base) => {
    await base.adminClient().delete().prefix(prefix);
    base.closeClients();
  });
}

async function containerEtcd(prefix: string): Promise<TestEtcd> {
  // A plain GenericContainer: @testcontainers/etcd exists only for testcontainers 12,
  // whose HTTP client (undici 8) needs Node 22; Trellis supports Node 20.
  const { GenericContainer, Wait } = await import('testcontainers');
  const container = await new GenericContainer(ETCD_IMAGE)
    .withCommand(['etcd', '--listen-client-urls=http://0.0.0.0:2379', '--advertise-client-urls=http://0.0.0.0:2379'])
    .withExposedPorts(2379)
    .withWaitStrategy(Wait.forHttp('/health', 2379))
    .start();
  const endpoints = [`http://${container.getHost()}:${container.getMappedPort(2379)}`];
  return unownedEtcd(endpoints, prefix, 'for a testcontainers etcd (its mapped port changes on restart)', async (base) => {
    base.closeClients();
    await container.stop();
  });
}

async function localEtcd(prefix: string, startTimeoutMs: number, extraArgs: string[]): Promise<TestEtcd> {
  const binary = requireBinary('etcd');
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const dataDir = await mkdtemp(join(tmpdir(), 'trellis-etcd-'));
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const proc = new ManagedProcess(`etcd on ${clientUrl}`, binary, [
    '--name=trellis-test',
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=trellis-test=${peerUrl}`,
    '--initial-cluster-state=new',
    // Small and quick: tests write little, and nothing here must survive a power cut.
    '--snapshot-count=5000',
    // One member, no peers to lose: a short election timeout makes (re)starts elect at once.
    '--heartbeat-interval=10',
    '--election-timeout=100',
    '--quota-backend-bytes=268435456',
    '--logger=zap',
    '--log-level=error',
    ...extraArgs,
  ]);
  const healthy = async () => {
    const res = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1_000) });
    return res.ok && ((await res.json()) as { health?: string }).health === 'true';
  };
  const start = async () => {
    proc.start();
    await waitUntil('etcd', healthy, proc, startTimeoutMs);
  };
  try {
    await start();
  } catch (err) {
    await proc.stop();
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  const base = baseHandle([clientUrl]);
  return {
    endpoints: [clientUrl],
    prefix,
    canRestart: true,
    client: base.client,
    compact: base.compact,
    stop: () => proc.stop(),
    start,
    async restart() {
      await proc.stop();
      await start();
    },
    pause: () => proc.freeze(),
    async resume() {
      if (!proc.signal('SIGCONT')) throw new Error('etcd is not running');
    },
    async close() {
      base.closeClients();
      proc.signal('SIGCONT'); // a frozen process would not act on SIGTERM until thawed
      await proc.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
