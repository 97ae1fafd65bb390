// startRedis(): a real Redis for integration tests, picked by environment:
// TRELLIS_TEST_REDIS_URL (shared server, own logical database) > Docker
// (testcontainers) > the local `redis-server` binary on a free loopback port.
import { randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireBinary } from './binaries';
import { ManagedProcess, waitUntil, withPortRetry } from './child-process';
import { dockerAvailable } from './docker';
import { freePort } from './ports';
import { redisCommands } from './resp';
import { unsupported } from './unsupported';

export interface TestRedis {
  /** `redis://host:port/<db>`: ioredis and node-redis both select `db` from the path. */
  readonly url: string;
  /** The logical database this suite owns (flushed at start and at close). */
  readonly db: number;
  /** With `tls`: `rediss://host:tlsPort/<db>`, the same server over TLS (the plain `url` stays open for probes). */
  readonly tlsUrl?: string;
  /** Whether stop/start work (false against a shared server or a container). */
  readonly canRestart: boolean;
  /** Stops the server, keeping its port and data. */
  stop(): Promise<void>;
  /** Starts a stopped server again on the same port with the same data. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export interface StartRedisOptions {
  startTimeoutMs?: number;
  /**
   * Also serve TLS with this certificate (client certificates optional). Always the local
   * `redis-server` binary: a shared server or a container has no certificate of the test's.
   */
  tls?: { certFile: string; keyFile: string; /** Roots for the client certificates some clients present. */ caFile: string };
}

const REDIS_IMAGE = 'redis:7.2-alpine';
/** Databases 1-15 are handed out to suites sharing a server; claims live in db 0. */
const SHARED_DBS = 15;
const CLAIM_TTL_SECONDS = 3_600;

export async function startRedis(opts: StartRedisOptions = {}): Promise<TestRedis> {
  const shared = process.env['TRELLIS_TEST_REDIS_URL'];
  if (shared && !opts.tls) return sharedRedis(shared);
  if (!opts.tls && (await dockerAvailable())) return containerRedis();
  return withPortRetry(() => localRedis(opts.startTimeoutMs ?? 60_000, opts.tls));
}

function withDb(url: string, db: number): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

async function sharedRedis(serverUrl: string): Promise<TestRedis> {
  // Claim a free database with SET NX in db 0 so parallel suites never share one.
  const claimKey = (db: number) => `trellis-test:db-claim:${db}`;
  const token = `${process.pid}-${randomInt(1e9)}`;
  let db: number | undefined;
  const offset = randomInt(SHARED_DBS);
  for (let i = 0; i < SHARED_DBS && db === undefined; i++) {
    const candidate = ((offset + i) % SHARED_DBS) + 1;
    const [claimed] = await redisCommands(serverUrl, [
      ['SELECT', '0'],
      ['SET', claimKey(candidate), token, 'NX', 'EX', String(CLAIM_TTL_SECONDS)],
    ]).then((r) => r.slice(1));
    if (claimed === 'OK') db = candidate;
  }
  if (db === undefined) throw new Error(`all ${SHARED_DBS} test databases on TRELLIS_TEST_REDIS_URL are claimed by other suites`);
  const owned = db;
  await redisCommands(serverUrl, [['SELECT', String(owned)], ['FLUSHDB']]);
  const why = 'against TRELLIS_TEST_REDIS_URL (a shared server)';
  return {
    url: withDb(serverUrl, owned),
    db: owned,
    canRestart: false,
    stop: unsupported('stop()', why),
    start: unsupported('start()', why),
    async close() {
      await redisCommands(serverUrl, [['SELECT', String(owned)], ['FLUSHDB'], ['SELECT', '0'], ['DEL', claimKey(owned)]]);
    },
  };
}

async function containerRedis(): Promise<TestRedis> {
  const { RedisContainer } = await import('@testcontainers/redis');
  const container = await new RedisContainer(REDIS_IMAGE).start();
  const why = 'for a testcontainers Redis (its mapped port changes on restart)';
  return {
    url: withDb(container.getConnectionUrl(), 0),
    db: 0,
    canRestart: false,
    stop: unsupported('stop()', why),
    start: unsupported('start()', why),
    async close() {
      await container.stop();
    },
  };
}

async function localRedis(startTimeoutMs: number, tls: StartRedisOptions['tls']): Promise<TestRedis> {
  const binary = requireBinary('redis-server');
  const port = await freePort();
  const tlsPort = tls ? await freePort() : undefined;
  const dir = await mkdtemp(join(tmpdir(), 'trellis-redis-'));
  const url = `redis://127.0.0.1:${port}/0`;
  const tlsArgs = tls
    ? [
        '--tls-port',
        String(tlsPort),
        '--tls-cert-file',
        tls.certFile,
        '--tls-key-file',
        tls.keyFile,
        '--tls-ca-cert-file',
        tls.caFile,
        '--tls-auth-clients',
        'optional',
      ]
    : [];
  const proc = new ManagedProcess(`redis-server on 127.0.0.1:${port}`, binary, [
    '--bind',
    '127.0.0.1',
    '--port',
    String(port),
    '--dir',
    dir,
    // An RDB save on shutdown (SIGTERM) keeps data across stop()/start(); nothing else touches disk.
    '--save',
    '3600 1',
    '--appendonly',
    'no',
    '--daemonize',
    'no',
    '--loglevel',
    'warning',
    ...tlsArgs,
  ]);
  const start = async () => {
    proc.start();
    await waitUntil('redis-server', async () => (await redisCommands(url, [['PING']], 500))[0] === 'PONG', proc, startTimeoutMs);
  };
  try {
    await start();
  } catch (err) {
    await proc.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    ...(tlsPort ? { tlsUrl: `rediss://127.0.0.1:${tlsPort}/0` } : {}),
    db: 0,
    canRestart: true,
    stop: () => proc.stop(),
    start,
    async close() {
      await proc.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
