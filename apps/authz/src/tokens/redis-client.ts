// The Redis client of the shared token cache: one Redis, Sentinel or Cluster, all
// through ioredis's own options, with ACL credentials and TLS. The cache is never
// trusted (tokens read from it are verified), but a Redis that anyone on the
// network can write to is still a denial-of-service lever, so production setups
// should use an ACL user and TLS.
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger, ShutdownStep } from '@trellis/runtime';
import type { AuthzConfig } from '../config';

export type RedisClient = Redis | Cluster;

type RedisConfig = Pick<
  AuthzConfig,
  | 'TRELLIS_REDIS_URL'
  | 'TRELLIS_REDIS_USERNAME'
  | 'TRELLIS_REDIS_PASSWORD_FILE'
  | 'TRELLIS_REDIS_TLS_CA_FILE'
  | 'TRELLIS_REDIS_TLS_CERT_FILE'
  | 'TRELLIS_REDIS_TLS_KEY_FILE'
  | 'TRELLIS_REDIS_SENTINELS'
  | 'TRELLIS_REDIS_SENTINEL_MASTER'
  | 'TRELLIS_REDIS_CLUSTER_NODES'
  | 'TRELLIS_REDIS_COMMAND_TIMEOUT_MS'
>;

export type RedisConnection =
  | { mode: 'standalone'; options: RedisOptions }
  | { mode: 'sentinel'; options: RedisOptions }
  | { mode: 'cluster'; nodes: { host: string; port: number }[]; options: ClusterOptions };

/** Pure: what ioredis is given for this configuration (files are read through `readFile`). */
export function redisConnection(config: RedisConfig, readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): RedisConnection {
  const url = new URL(config.TRELLIS_REDIS_URL);
  const tls = url.protocol === 'rediss:' || config.TRELLIS_REDIS_TLS_CA_FILE !== undefined;
  const username = config.TRELLIS_REDIS_USERNAME ?? (url.username ? decodeURIComponent(url.username) : undefined);
  const password =
    config.TRELLIS_REDIS_PASSWORD_FILE !== undefined
      ? readFile(config.TRELLIS_REDIS_PASSWORD_FILE).trim()
      : url.password
        ? decodeURIComponent(url.password)
        : undefined;
  const node: RedisOptions = {
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(tls
      ? {
          tls: {
            // Verify the server against these roots (default: the system's), and its name.
            ...(config.TRELLIS_REDIS_TLS_CA_FILE !== undefined ? { ca: readFile(config.TRELLIS_REDIS_TLS_CA_FILE) } : {}),
            ...(config.TRELLIS_REDIS_TLS_CERT_FILE !== undefined ? { cert: readFile(config.TRELLIS_REDIS_TLS_CERT_FILE) } : {}),
            ...(config.TRELLIS_REDIS_TLS_KEY_FILE !== undefined ? { key: readFile(config.TRELLIS_REDIS_TLS_KEY_FILE) } : {}),
          },
        }
      : {}),
    // Fail fast: no queueing while disconnected, no retries per command, a tight timeout.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: config.TRELLIS_REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: 2_000,
    retryStrategy: (attempt: number) => Math.min(attempt * 200, 2_000),
  };
  if (config.TRELLIS_REDIS_CLUSTER_NODES) {
    return {
      mode: 'cluster',
      nodes: config.TRELLIS_REDIS_CLUSTER_NODES,
      options: {
        redisOptions: node,
        enableOfflineQueue: false,
        clusterRetryStrategy: (attempt: number) => Math.min(attempt * 200, 2_000),
        // Nodes announce their own names; TLS must verify against those, not the seed list.
        ...(tls ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
      },
    };
  }
  const db = Number(url.pathname.slice(1) || '0');
  if (config.TRELLIS_REDIS_SENTINELS) {
    return {
      mode: 'sentinel',
      options: {
        ...node,
        db,
        name: config.TRELLIS_REDIS_SENTINEL_MASTER!,
        sentinels: config.TRELLIS_REDIS_SENTINELS,
        // Sentinels take the same ACL user and TLS as the data nodes.
        ...(username !== undefined ? { sentinelUsername: username } : {}),
        ...(password !== undefined ? { sentinelPassword: password } : {}),
        ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: node.tls } : {}),
        sentinelRetryStrategy: (attempt: number) => Math.min(attempt * 200, 2_000),
      },
    };
  }
  return { mode: 'standalone', options: { ...node, host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 6379), db } };
}

export function createRedisClient(config: RedisConfig): RedisClient {
  const connection = redisConnection(config);
  return connection.mode === 'cluster' ? new Cluster(connection.nodes, connection.options) : new Redis(connection.options);
}

/** What a reload of the Redis files did: changed (the next connection uses them), unchanged, error (the previous ones stay). */
export type RedisFilesReloadResult = 'changed' | 'unchanged' | 'error';

/** The options fields the password and TLS files set (the rest of a connection's options never change). */
const SECRET_FIELDS = ['password', 'sentinelPassword', 'tls', 'sentinelTLS'] as const;
type RedisSecrets = Pick<RedisOptions, (typeof SECRET_FIELDS)[number]>;

function secretsOf(options: RedisOptions): RedisSecrets {
  return Object.fromEntries(SECRET_FIELDS.filter((f) => options[f] !== undefined).map((f) => [f, options[f]]));
}

/**
 * Reads TRELLIS_REDIS_PASSWORD_FILE and the TLS files again into `client`'s options. Redis checks
 * AUTH and TLS when a connection opens only, so open connections carry on, and ioredis reads
 * these options at each (re)connect: a rotated password (an ACL user with the old and new one
 * during the change) or client certificate, or a CA with the server's new root, is used from the
 * next reconnect on, without a restart. A file that cannot be read, or a key that is not its
 * certificate's, changes nothing (the connection would fail; the last good files may still work).
 */
export function reloadRedisFiles(
  config: RedisConfig,
  client: RedisClient,
  readFile: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): RedisFilesReloadResult {
  const connection = redisConnection(config, readFile);
  const next = secretsOf(connection.mode === 'cluster' ? (connection.options.redisOptions ?? {}) : connection.options);
  if (next.tls) createSecureContext(next.tls); // throws on a key that is not the certificate's, or unreadable PEM
  // A cluster's node connections each hold their own copy of redisOptions; new nodes start from the cluster's.
  const targets: RedisOptions[] =
    client instanceof Cluster ? [client.options.redisOptions ?? {}, ...client.nodes().map((node) => node.options)] : [client.options];
  if (targets.every((options) => sameSecrets(secretsOf(options), next))) return 'unchanged';
  for (const options of targets) Object.assign(options, next);
  return 'changed';
}

function sameSecrets(a: RedisSecrets, b: RedisSecrets): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The client authz runs with: connectivity logged once per change, closed by its shutdown step; its files reloadable. */
export function startRedis(
  config: RedisConfig,
  logger: Logger,
  onReload?: (result: RedisFilesReloadResult) => void,
): { client: RedisClient; shutdownStep: ShutdownStep; reloadFiles(): void } {
  const client = createRedisClient(config);
  logConnectivity(client, logger);
  const hasFiles =
    config.TRELLIS_REDIS_PASSWORD_FILE !== undefined ||
    config.TRELLIS_REDIS_TLS_CA_FILE !== undefined ||
    config.TRELLIS_REDIS_TLS_CERT_FILE !== undefined;
  return {
    client,
    shutdownStep: { name: 'close Redis', run: () => void client.disconnect() },
    reloadFiles() {
      if (!hasFiles) return;
      let result: RedisFilesReloadResult;
      try {
        result = reloadRedisFiles(config, client);
        if (result === 'changed') logger.info('Redis password or TLS files changed; the next Redis connection uses them');
      } catch (err) {
        result = 'error';
        logger.error({ err }, 'reloading the Redis password or TLS files failed; keeping the current ones');
      }
      onReload?.(result);
    },
  };
}

/** Logs Redis connectivity once per change, not once per reconnect attempt (tokens are minted locally meanwhile). */
function logConnectivity(redis: RedisClient, logger: Logger): void {
  let healthy: boolean | undefined;
  redis.on('ready', () => {
    if (healthy !== true) logger.info('Redis connected');
    healthy = true;
  });
  redis.on('error', (err: Error) => {
    if (healthy !== false) logger.warn({ err: { message: err.message } }, 'Redis unavailable: tokens are minted locally until it is back');
    healthy = false;
  });
}
