// Every metric authz exports, in one place. Labels are bounded enums: never a
// service pair, node id or token subject.
import type { CallDirection } from '@trellis/mesh-contracts';
import { registerCertificateExpiryGauge } from '@trellis/runtime';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { DecisionReason } from './check/decision';
import type { StreamsKeptIn } from './grpc/session-streams';
import { TalliedHistogram } from './tallied-histogram';

/** The check's direction as a metric label: a CallDirection, or `unknown` when the context named none we know. */
export type Direction = CallDirection | 'unknown';
export type CacheLayer = 'memory' | 'redis';
export type CacheResult = 'hit' | 'miss' | 'error' | 'skipped';
/** mesh: A→B tokens for calls; xds: a sidecar's credential for its xDS stream. */
export type MintedKind = 'mesh' | 'xds';
/** authz's TLS ports: the ext_authz gRPC port and the HTTPS token port. */
export type TlsPort = 'grpc' | 'mtls';

export class AuthzMetrics {
  readonly checks: Counter<'direction' | 'result' | 'reason'>;
  readonly checkDuration: TalliedHistogram<'direction'>;
  readonly tokenCache: Counter<'layer' | 'result'>;
  readonly tokensMinted: Counter<'alg' | 'kind'>;
  readonly mintDuration: Histogram;
  readonly redisErrors: Counter<'operation'>;
  readonly redisBreakerOpen: Gauge;
  readonly signingKeys: Gauge<'state'>;
  readonly keyPublishErrors: Counter;
  readonly tokenEndpointRequests: Counter<'result'>;
  readonly edgeJwksFetchErrors: Counter;
  readonly certificateRequests: Counter<'result'>;
  readonly certificatesIssued: Counter<'method'>;
  readonly recordsDropped: Counter<'kind'>;
  readonly etcdWatchDisconnects: Counter<'code'>;
  readonly callerIdentityDenials: Counter<'direction' | 'reason'>;
  readonly tlsReloads: Counter<'result'>;
  readonly redisFilesReloads: Counter<'result'>;
  readonly serviceCredentialsReloads: Counter<'result'>;
  readonly checkWorkerRestarts: Counter;
  readonly checkWorkerCalls: Counter<'kind'>;
  /** Connections a TLS port's guard closed before they were through (grpc: handshake and HTTP/2 preface; mtls: handshake). */
  readonly tlsRefused: Counter<'port' | 'reason'>;
  /** Connections by where their streams are kept from their first Check (grpc/session-streams.ts). */
  readonly grpcConnections: Counter<'streams'>;
  /** Where the pending-TLS-connections gauge reads each port's count at scrape time. */
  private readonly tlsPending = new Map<TlsPort, () => number>();

  // Per-Check counts are tallied in plain numbers and handed to prom-client at
  // scrape time: prom-client hashes the label set on every inc(), which costs more
  // than the rest of a cache-hit Check's own work.
  // Keyed by direction, then reason (which implies the result): two lookups, no key string built per Check.
  private readonly checkTally = new Map<
    Direction,
    Map<DecisionReason, { labels: { direction: Direction; result: string; reason: DecisionReason }; pending: number }>
  >();
  private readonly checkTimers = new Map<string, { observe(value: number): void }>();
  /** Token cache lookups on the Check's hot path, tallied the same way. */
  private readonly cacheTally = new Map<string, { labels: { layer: string; result: string }; pending: number }>();

  constructor(readonly registry: Registry) {
    const registers = [registry];
    const checkTally = this.checkTally;
    this.checks = new Counter({
      name: 'trellis_authz_checks_total',
      help: 'ext_authz Check decisions by direction, result (ok, denied) and reason',
      labelNames: ['direction', 'result', 'reason'],
      registers,
      collect() {
        for (const byReason of checkTally.values()) {
          for (const entry of byReason.values()) {
            if (entry.pending === 0) continue;
            this.inc(entry.labels, entry.pending);
            entry.pending = 0;
          }
        }
      },
    });
    // Observed on every Check: plain numbers rather than prom-client's per-call label hashing.
    this.checkDuration = new TalliedHistogram({
      name: 'trellis_authz_check_duration_seconds',
      help: 'Time to decide a Check, from request to response',
      labelName: 'direction',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5],
      registers,
    });
    const cacheTally = this.cacheTally;
    this.tokenCache = new Counter({
      name: 'trellis_authz_token_cache_total',
      help: 'Mesh token cache lookups by layer (memory, redis) and result (hit, miss, error, skipped while Redis is unavailable, rejected: a Redis token that did not verify)',
      labelNames: ['layer', 'result'],
      registers,
      collect() {
        for (const entry of cacheTally.values()) {
          if (entry.pending === 0) continue;
          this.inc(entry.labels, entry.pending);
          entry.pending = 0;
        }
      },
    });
    this.tokensMinted = new Counter({
      name: 'trellis_authz_tokens_minted_total',
      help: 'Tokens signed by this replica, by alg and kind (mesh: A→B calls; xds: xDS stream credentials)',
      labelNames: ['alg', 'kind'],
      registers,
    });
    this.mintDuration = new Histogram({
      name: 'trellis_authz_token_mint_duration_seconds',
      help: 'Time to sign one mesh token',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers,
    });
    this.redisErrors = new Counter({
      name: 'trellis_authz_redis_errors_total',
      help: 'Redis commands that failed or timed out; authz then mints locally',
      labelNames: ['operation'],
      registers,
    });
    this.redisBreakerOpen = new Gauge({
      name: 'trellis_authz_redis_breaker_open',
      help: '1 while the Redis circuit breaker is open and the shared cache is bypassed',
      registers,
    });
    this.signingKeys = new Gauge({
      name: 'trellis_authz_signing_keys',
      help: 'Keys in the key ring by state (pending: published, not yet signing; active; retiring: still verifying)',
      labelNames: ['state'],
      registers,
    });
    this.keyPublishErrors = new Counter({
      name: 'trellis_authz_key_publish_errors_total',
      help: 'Failed writes of public keys to etcd; a key is never used to sign before it is published',
      registers,
    });
    this.tokenEndpointRequests = new Counter({
      name: 'trellis_authz_token_endpoint_requests_total',
      help: 'POST /v1/token requests by result (ok: a mesh token; xds-ok: an xDS token; disabled, unauthenticated, invalid, not-ready, denied, error)',
      labelNames: ['result'],
      registers,
    });
    this.edgeJwksFetchErrors = new Counter({
      name: 'trellis_authz_edge_jwks_errors_total',
      help: 'Failures to fetch a Cloudflare Access team certs document',
      registers,
    });
    this.certificateRequests = new Counter({
      name: 'trellis_authz_certificate_requests_total',
      help: 'POST /v1/certificate requests by result (ok, disabled, invalid, unauthenticated, denied, error)',
      labelNames: ['result'],
      registers,
    });
    this.certificatesIssued = new Counter({
      name: 'trellis_authz_certificates_issued_total',
      help: 'Workload certificates signed, by how the caller proved its service (credential: a VM credential; kubernetes: a ServiceAccount token)',
      labelNames: ['method'],
      registers,
    });
    this.recordsDropped = new Counter({
      name: 'trellis_authz_records_dropped_total',
      help: 'etcd records (or parts of them) authz cannot use and leaves out, by kind (service, instance, meshSettings, authzKey, accessTeamDomain)',
      labelNames: ['kind'],
      registers,
    });
    this.etcdWatchDisconnects = new Counter({
      name: 'trellis_authz_etcd_watch_disconnects_total',
      help: "Times the connected mesh watch on etcd broke, by gRPC status (unavailable: the connection dropped, e.g. a keepalive ping unanswered; resource_exhausted: etcd's GOAWAY too_many_pings; ended: etcd ended the stream); each reconnects and resumes from its revision",
      labelNames: ['code'],
      registers,
    });
    this.callerIdentityDenials = new Counter({
      name: 'trellis_authz_caller_identity_denials_total',
      help: 'Checks and token requests refused for who sent them, by direction (outbound, inbound, edge, token) and reason (peer-unauthenticated: no client certificate; peer-unknown-identity; peer-not-a-service; source-mismatch: trellis.source names another service than the certificate; destination-mismatch; edge-peer-not-allowed; credential-only: a service credential without a certificate)',
      labelNames: ['direction', 'reason'],
      registers,
    });
    this.tlsReloads = new Counter({
      name: 'trellis_authz_tls_reloads_total',
      help: "Refreshes of authz's serving certificate and client trust bundle by result (changed, unchanged, error: the previous material stays in use)",
      labelNames: ['result'],
      registers,
    });
    this.redisFilesReloads = new Counter({
      name: 'trellis_authz_redis_files_reloads_total',
      help: 'Reloads of the Redis password and TLS files by result (changed: the next Redis connection uses them, unchanged, error: the previous ones stay)',
      labelNames: ['result'],
      registers,
    });
    this.serviceCredentialsReloads = new Counter({
      name: 'trellis_authz_service_credentials_reloads_total',
      help: 'New contents of TRELLIS_TOKEN_ENDPOINT_CREDENTIALS read since start, by result: applied (ok), or refused keeping the last good set (invalid)',
      labelNames: ['result'],
      registers,
    });
    for (const result of ['ok', 'invalid']) this.serviceCredentialsReloads.inc({ result }, 0);
    this.checkWorkerRestarts = new Counter({
      name: 'trellis_authz_check_worker_restarts_total',
      help: 'Times the Check worker thread died and was restarted (Checks fail closed in between)',
      registers,
    });
    this.checkWorkerCalls = new Counter({
      name: 'trellis_authz_check_worker_calls_total',
      help: 'What the Check worker asked the main thread, by kind (token: not in its memory; verify: an inbound token; access: a Cloudflare Access token); a cache hit or a policy denial asks nothing',
      labelNames: ['kind'],
      registers,
    });
    this.tlsRefused = new Counter({
      name: 'trellis_authz_tls_connections_refused_total',
      help: 'Connections to a TLS port (grpc, mtls) closed before they were through their handshake (and on grpc the HTTP/2 preface): too_many_pending, handshake_timeout, handshake_failed, preface_timeout',
      labelNames: ['port', 'reason'],
      registers,
    });
    this.grpcConnections = new Counter({
      name: 'trellis_authz_grpc_connections_total',
      help: "gRPC connections that had a Check, by where their streams are kept from the first: by_id (node:http2's per-session Map swapped for an id-keyed registry, less GC under load), node_map (this Node version lays the session out otherwise: left in node's Map)",
      labelNames: ['streams'],
      registers,
    });
    for (const streams of ['by_id', 'node_map'] satisfies StreamsKeptIn[]) this.grpcConnections.inc({ streams }, 0);
    const tlsPending = this.tlsPending;
    new Gauge({
      name: 'trellis_authz_tls_pending_connections',
      help: 'Connections to a TLS port (grpc, mtls) not yet through their handshake (and on grpc the HTTP/2 preface); capped by TRELLIS_TLS_MAX_PENDING_CONNECTIONS',
      labelNames: ['port'],
      registers,
      collect() {
        for (const [port, source] of tlsPending) this.set({ port }, source());
      },
    });
  }

  /** When the etcd client certificate expires; registered only where there is one (an unset gauge would read 0). */
  registerEtcdClientCertExpiry(certPem: Buffer): void {
    registerCertificateExpiryGauge(
      this.registry,
      {
        name: 'trellis_authz_etcd_client_cert_expiry_timestamp_seconds',
        help: 'When the client certificate this process presents to etcd (TRELLIS_ETCD_CERT_FILE, read at start) expires, as a Unix time; a renewed file takes effect at the next restart.',
      },
      certPem,
      'TRELLIS_ETCD_CERT_FILE',
    );
  }

  readTlsPendingFrom(port: TlsPort, source: () => number): void {
    this.tlsPending.set(port, source);
  }

  countCheck(direction: Direction, result: 'ok' | 'denied', reason: DecisionReason): void {
    let byReason = this.checkTally.get(direction);
    if (!byReason) {
      byReason = new Map();
      this.checkTally.set(direction, byReason);
    }
    const entry = byReason.get(reason);
    if (entry) entry.pending += 1;
    else byReason.set(reason, { labels: { direction, result, reason }, pending: 1 });
  }

  /** A counter of token cache lookups for the hot path: a plain number, handed to prom-client when scraped. */
  tokenCacheCounter(layer: 'memory', result: 'hit' | 'miss'): { inc(): void } {
    const key = `${layer}/${result}`;
    let entry = this.cacheTally.get(key);
    if (!entry) {
      entry = { labels: { layer, result }, pending: 0 };
      this.cacheTally.set(key, entry);
    }
    const tally = entry;
    return {
      inc: () => {
        tally.pending += 1;
      },
    };
  }

  observeCheckDuration(direction: Direction, seconds: number): void {
    let child = this.checkTimers.get(direction);
    if (!child) {
      child = this.checkDuration.labels(direction);
      this.checkTimers.set(direction, child);
    }
    child.observe(seconds);
  }
}
