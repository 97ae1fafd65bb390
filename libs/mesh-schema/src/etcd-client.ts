// One way to connect to etcd, with a fault policy chosen on purpose (etcd3's
// default 5 s host circuit breaker keeps failing calls after etcd is back).
import { readFileSync } from 'node:fs';
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, noop, retry, type IBackoff, type IPolicy } from 'cockatiel';
import {
  Etcd3,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  EtcdWatchStreamEnded,
  GRPCDeadlineExceededError,
  isRecoverableError,
  type IKeyValue,
  type IOptions,
} from 'etcd3';
import { ReplicaLease } from './store/replica-lease';
import { afterSocketsRead, type EtcdEnv } from '@trellis/runtime';

export interface EtcdConnectionOptions {
  /** `http://` or `https://` client URLs; calls spread over them and fail over. */
  endpoints: string[];
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  auth?: { username: string; password: string };
  /** Deadline of each unary call (streams have none). Default 5 s. */
  callTimeoutMs?: number;
  /** Largest response accepted. Default 64 MiB; ranges are paginated well below it anyway. */
  maxReceiveMessageBytes?: number;
  /**
   * HTTP/2 keepalive of the connection (see ETCD_KEEPALIVE). Tests ping sooner; etcd refuses
   * pings more often than its `--grpc-keepalive-min-time` (5 s by default) with GOAWAY.
   */
  keepalive?: { timeMs?: number; timeoutMs?: number };
}

const DEFAULT_CALL_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_RECEIVE_BYTES = 64 * 1024 * 1024;
/**
 * How much longer than the call timeout grpc-js's own deadline is: that deadline is a plain timer,
 * which fails a call whose answer waits unread behind a long synchronous turn (and a retried create
 * then meets its own first attempt: "already exists"). The call timeout is judged by
 * withSocketAwareDeadline instead; grpc-js's deadline only ends a call etcd never answers.
 */
const GRPC_DEADLINE_SLACK_MS = 30_000;

/**
 * Keepalive pings find an etcd that stopped answering with its socket still open (frozen,
 * partitioned away), so that a watch moves to another member; readiness does not wait for
 * them (the status probe). The timeout is long because grpc-js judges a ping by a timer, and
 * Node runs due timers before it reads sockets: an event-loop iteration that starts just after
 * a ping and outlasts the timeout drops the connection though etcd answered at once, and
 * every call on it fails with "14 UNAVAILABLE: Connection dropped". With 10 s a control plane
 * busy with its first push at 10,000 services / 5,000 streams on a machine at load ~15 lost its
 * watch 8 times (libs/mesh-schema/test/etcd-busy-loop.test.ts performs it). 60 s is six times
 * that stall; a silent etcd is still left within 90 s (30 s to the ping, 60 s to its timeout).
 */
export const ETCD_KEEPALIVE = { timeMs: 30_000, timeoutMs: 60_000 } as const;

export function connectEtcd(opts: EtcdConnectionOptions): Etcd3 {
  if (opts.endpoints.length === 0) throw new Error('at least one etcd endpoint is required');
  const callTimeoutMs = opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const multiHost = opts.endpoints.length > 1;
  const options: IOptions = {
    hosts: opts.endpoints,
    dialTimeout: callTimeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs + GRPC_DEADLINE_SLACK_MS }),
    grpcOptions: {
      'grpc.max_receive_message_length': opts.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE_BYTES,
      'grpc.keepalive_time_ms': opts.keepalive?.timeMs ?? ETCD_KEEPALIVE.timeMs,
      'grpc.keepalive_timeout_ms': opts.keepalive?.timeoutMs ?? ETCD_KEEPALIVE.timeoutMs,
      'grpc.keepalive_permit_without_calls': 1,
      // Reconnect to a returning etcd within seconds, not grpc's default of up to 2 minutes.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5_000,
    },
    faultHandling: {
      // A few quick retries ride out a leader election or a restart; each retry
      // picks another endpoint. Past that the caller sees the error at once.
      global: retry(handleWhen(isRecoverableError), {
        maxAttempts: multiHost ? Math.max(3, opts.endpoints.length) : 3,
        backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1_000 }),
      }),
      // With several endpoints, skip a dead one briefly; with one there is nowhere
      // else to go, so a breaker would only delay noticing that etcd is back.
      // Each attempt on a host ends after the call timeout, judged after this process read its sockets.
      host: () =>
        withSocketAwareDeadline(
          multiHost ? circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(3) }) : noop,
          callTimeoutMs,
        ),
      // Watch streams reconnect quickly (0.1 s … 2 s), not after etcd3's default up to 30 s;
      // at once when no watch is left (see WatchReconnectBackoff).
      // etcd3 calls `.next()` on this to (re)start the sequence, as with its own
      // default (an ExponentialBackoff); its type asks for a started backoff.
      watchBackoff: new WatchReconnectBackoff(new ExponentialBackoff({ initialDelay: 100, maxDelay: 2_000 }), () =>
        watchesIdle(client),
      ) as unknown as IBackoff<unknown>,
    },
  };
  if (opts.tls) {
    // grpc-js accepts a null root certificate (system roots) though etcd3's type says Buffer.
    options.credentials = { rootCertificate: (opts.tls.ca ?? null) as Buffer, privateKey: opts.tls.key, certChain: opts.tls.cert };
  }
  if (opts.auth) options.auth = { username: opts.auth.username, password: opts.auth.password };
  const client = new Etcd3(options);
  return client;
}

/**
 * `policy`, with every attempt failed as a gRPC DEADLINE_EXCEEDED (recoverable: etcd3 resets the host's
 * channels and the retry policy tries again, as for grpc-js's own deadline) when it has not settled
 * `timeoutMs` after it started and after this process has since read its sockets (afterSocketsRead).
 * Attempts that return a stream settle at once.
 */
export function withSocketAwareDeadline<P extends IPolicy>(policy: P, timeoutMs: number): P {
  const execute: IPolicy['execute'] = (fn, signal) =>
    policy.execute(
      (context) =>
        new Promise((resolve, reject) => {
          const cancel = afterSocketsRead(timeoutMs, () =>
            reject(new GRPCDeadlineExceededError(`4 DEADLINE_EXCEEDED: etcd did not answer within ${timeoutMs} ms`)),
          );
          Promise.resolve()
            .then(() => fn(context))
            .then(resolve, reject)
            .finally(cancel);
        }),
      signal,
    );
  // The policy's own events and state stay reachable through the prototype.
  return Object.assign(Object.create(policy) as P, { execute });
}

/** What etcd3's watch backoff is asked for: a delay, and the next one. */
interface WatchBackoffStep {
  readonly duration: number;
  next(context?: unknown): WatchBackoffStep | undefined;
}

/**
 * The delay before etcd3 reopens its watch stream, 0 while no watch is attached. etcd3
 * (1.1.2) schedules a reopen whenever the stream ends, also when it ended it itself
 * because the last watch was cancelled or the client closed; that reopen finds no watch
 * and does nothing, but its timer (up to the 2 s maximum) kept a process that had closed
 * everything alive (jest: "did not exit one second after the test run has completed").
 */
export class WatchReconnectBackoff implements WatchBackoffStep {
  constructor(
    private readonly inner: { readonly duration?: number; next(context?: unknown): WatchBackoffStep | undefined },
    private readonly idle: () => boolean,
  ) {}

  get duration(): number {
    return this.idle() ? 0 : (this.inner.duration ?? 0);
  }

  next(): WatchReconnectBackoff | undefined {
    const next = this.inner.next(undefined);
    return next && new WatchReconnectBackoff(next, this.idle);
  }
}

/** Whether `client` has no watch attached: etcd3 keeps them in its (private) watch manager; false if that is not there. */
function watchesIdle(client: Etcd3): boolean {
  const manager = (client as unknown as { watchManager?: { watchers?: unknown[] } }).watchManager;
  return Array.isArray(manager?.watchers) && manager.watchers.length === 0;
}

/** Connection options from `etcdEnvSchema` values: reads the TLS and password files. */
export function etcdOptionsFromEnv(env: EtcdEnv): EtcdConnectionOptions {
  const read = (variable: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`${variable}: cannot read ${path}: ${(err as Error).message}`);
    }
  };
  const opts: EtcdConnectionOptions = { endpoints: env.TRELLIS_ETCD_ENDPOINTS };
  const { TRELLIS_ETCD_CA_FILE: ca, TRELLIS_ETCD_CERT_FILE: cert, TRELLIS_ETCD_KEY_FILE: key } = env;
  if (Boolean(cert) !== Boolean(key)) throw new Error('TRELLIS_ETCD_CERT_FILE and TRELLIS_ETCD_KEY_FILE must be set together');
  if (ca || cert || env.TRELLIS_ETCD_ENDPOINTS.some((e) => e.startsWith('https://'))) {
    opts.tls = {
      ca: ca ? read('TRELLIS_ETCD_CA_FILE', ca) : undefined,
      cert: cert ? read('TRELLIS_ETCD_CERT_FILE', cert) : undefined,
      key: key ? read('TRELLIS_ETCD_KEY_FILE', key) : undefined,
    };
  }
  if (env.TRELLIS_ETCD_USERNAME) {
    if (!env.TRELLIS_ETCD_PASSWORD_FILE) throw new Error('TRELLIS_ETCD_USERNAME is set but TRELLIS_ETCD_PASSWORD_FILE is not');
    opts.auth = {
      username: env.TRELLIS_ETCD_USERNAME,
      password: read('TRELLIS_ETCD_PASSWORD_FILE', env.TRELLIS_ETCD_PASSWORD_FILE).toString('utf8').trim(),
    };
  }
  return opts;
}

/** Keys per page when listing: keeps every response far below gRPC's message limit. */
export const RANGE_PAGE_SIZE = 500;

/** Smallest key after every key starting with `prefix` (etcd's prefix range end). */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/**
 * Every key under `prefix`, read page by page at one revision (the first page's
 * unless `revision` is given), so the result is a consistent snapshot.
 */
export async function rangePrefix(
  client: Etcd3,
  prefix: string,
  revision?: string,
  pageSize: number = RANGE_PAGE_SIZE,
): Promise<{ revision: string; kvs: IKeyValue[] }> {
  const rangeEnd = prefixEnd(prefix);
  const kvs: IKeyValue[] = [];
  let key = Buffer.from(prefix);
  let atRevision = revision;
  for (;;) {
    const res = await client.kv.range({ key, range_end: rangeEnd, limit: pageSize, revision: atRevision ?? 0 });
    atRevision ??= res.header.revision;
    kvs.push(...res.kvs);
    if (!res.more || res.kvs.length === 0) break;
    // Next page starts right after the last key: append a zero byte.
    key = Buffer.concat([res.kvs[res.kvs.length - 1]!.key, Buffer.from([0])]);
  }
  return { revision: atRevision, kvs };
}

/**
 * The etcd client the apps hold and pass around. Only this library calls etcd
 * (store, watcher, leases, readiness); lint keeps `etcd3` out of every other project.
 */
export type EtcdClient = Etcd3;

/** A lease that keeps itself alive in the background until revoked. */
export interface KeptAliveLease {
  /** Resolves with the lease id once etcd granted it. */
  grant(): Promise<string>;
  revoke(): Promise<void>;
  /** etcd forgot the lease (for example after a long outage): whatever it held is gone. */
  on(event: 'lost', listener: (err: Error) => void): unknown;
  /** etcd answered a refresh: the lease is alive for its full TTL again. */
  on(event: 'keepaliveSucceeded', listener: () => void): unknown;
}

/**
 * A replica's lease: what is written under it disappears when the replica stops renewing it. Granted under an ID chosen
 * here, so a grant whose answer was lost leaves no orphan lease behind (replica-lease.ts).
 */
export function keptAliveLease(client: EtcdClient, ttlSeconds: number): KeptAliveLease {
  return new ReplicaLease(client, ttlSeconds);
}

/**
 * etcd refused a watch for the auth token its stream was opened with. etcd reads the
 * token once, when a stream opens, and checks it for every watch created on that
 * stream; simple tokens die when etcd restarts (they live in its memory), and both
 * kinds expire (`--auth-token-ttl`). Servers without etcd-io/etcd#14322 say
 * "permission denied" instead of "invalid auth token".
 */
export function isStaleAuthTokenRefusal(err: unknown): boolean {
  return err instanceof EtcdInvalidAuthTokenError || err instanceof EtcdPermissionDeniedError;
}

/**
 * Makes `client` hold a token etcd accepts: etcd3 re-authenticates when a unary call
 * meets "invalid auth token" (not when a stream does), and every stream opened
 * afterwards carries the new token. `readableKey`: any key the client's etcd user may
 * read. A no-op without auth.
 */
export async function refreshAuthToken(client: EtcdClient, readableKey: string): Promise<void> {
  await client.kv.range({ key: Buffer.from(readableKey), limit: 1, keys_only: true, serializable: true });
}

/** gRPC's status codes by number (fixed by the protocol), as metric label values. */
const GRPC_STATUS_NAMES = [
  'ok',
  'cancelled',
  'unknown',
  'invalid_argument',
  'deadline_exceeded',
  'not_found',
  'already_exists',
  'permission_denied',
  'resource_exhausted',
  'failed_precondition',
  'aborted',
  'out_of_range',
  'unimplemented',
  'internal',
  'unavailable',
  'data_loss',
  'unauthenticated',
] as const;

/**
 * Why an etcd watch stream broke, as a bounded label: the gRPC status of `err` ("unavailable" for
 * "14 UNAVAILABLE: Connection dropped", "resource_exhausted" for etcd's GOAWAY "too_many_pings"),
 * "ended" for a stream that ended without one, "other" for anything else.
 */
export function etcdStreamErrorCode(err: Error): string {
  if (err instanceof EtcdWatchStreamEnded) return 'ended';
  // etcd3 re-wraps grpc-js's errors keeping their message, "<code> <NAME>: <details>".
  const code = /^(\d{1,2}) [A-Z_]+:/.exec(err.message)?.[1];
  return (code !== undefined && GRPC_STATUS_NAMES[Number(code)]) || 'other';
}

/** Resolves when etcd answers a status call; rejects with the reason otherwise (readiness checks). */
export async function etcdStatus(client: EtcdClient): Promise<void> {
  await client.maintenance.status();
}
