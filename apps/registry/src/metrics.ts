// Every metric the registry exports, in one place.
import { registerCertificateExpiryGauge } from '@trellis/runtime';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';

export interface RegistryMetrics {
  httpRequests: Counter<'route' | 'method' | 'status'>;
  httpDuration: Histogram<'route' | 'method' | 'status'>;
  etcdErrors: Counter<'operation'>;
  authFailures: Counter<'reason'>;
  serviceChanges: Counter<'action'>;
  viewFallbacks: Counter;
  invalidRecords: Counter<'kind'>;
  etcdWatchDisconnects: Counter<'code'>;
  leasePoolTakes: Counter<'result'>;
  leaseKeepAliveStreamsDropped: Counter<'reason'>;
  serviceCredentialsReloads: Counter<'result'>;
  secretFileReloads: Counter<'secret' | 'result'>;
}

/** What the metrics read from the in-memory view at scrape time. */
export interface ViewGauges {
  ageSeconds(): number;
  readonly revision: string;
}

export function createRegistryMetrics(registry: Registry): RegistryMetrics {
  return {
    httpRequests: new Counter({
      name: 'trellis_registry_http_requests_total',
      help: 'HTTP requests handled, by route template, method and status code.',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'trellis_registry_http_request_duration_seconds',
      help: 'HTTP request latency, by route template, method and status code.',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    etcdErrors: new Counter({
      name: 'trellis_registry_etcd_errors_total',
      help: 'etcd operations that failed (unreachable, timeout, unexpected error), by operation.',
      labelNames: ['operation'],
      registers: [registry],
    }),
    authFailures: new Counter({
      name: 'trellis_registry_auth_failures_total',
      help: 'Requests refused by authentication or authorisation, by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    serviceChanges: new Counter({
      name: 'trellis_registry_service_changes_total',
      help: 'Service definition changes written, by action (create, update, delete, rollback).',
      labelNames: ['action'],
      registers: [registry],
    }),
    viewFallbacks: new Counter({
      name: 'trellis_registry_view_fallbacks_total',
      help: "Reads served from etcd because the in-memory view had not reached this process's last write within the catch-up time.",
      registers: [registry],
    }),
    invalidRecords: new Counter({
      name: 'trellis_registry_invalid_records_total',
      help: 'Stored values left out of the in-memory view because they are unusable, by record kind (each counted once per revision).',
      labelNames: ['kind'],
      registers: [registry],
    }),
    etcdWatchDisconnects: new Counter({
      name: 'trellis_registry_etcd_watch_disconnects_total',
      help: "Times the connected mesh watch on etcd broke, by gRPC status (unavailable: the connection dropped, e.g. a keepalive ping unanswered; resource_exhausted: etcd's GOAWAY too_many_pings; ended: etcd ended the stream); each reconnects and resumes from its revision",
      labelNames: ['code'],
      registers: [registry],
    }),
    leasePoolTakes: leasePoolTakes(registry),
    leaseKeepAliveStreamsDropped: new Counter({
      name: 'trellis_registry_lease_keepalive_streams_dropped_total',
      help: 'Times the one lease keep-alive stream (heartbeats and pooled leases) was dropped, by reason: a refresh unanswered in time (timeout), or an error or end from etcd or the connection (broken); the refreshes waiting on it are sent again on a new stream.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    serviceCredentialsReloads: serviceCredentialsReloads(registry),
    secretFileReloads: new Counter({
      name: 'trellis_registry_secret_file_reloads_total',
      help: 'New contents of TRELLIS_ADMIN_TOKEN_FILE (admin_token) and TRELLIS_CSRF_SECRET_FILE (csrf_secret) read since start, by result: applied (ok), or refused keeping the last good secret (invalid).',
      labelNames: ['secret', 'result'],
      registers: [registry],
    }),
  };
}

function serviceCredentialsReloads(registry: Registry): Counter<'result'> {
  const counter = new Counter({
    name: 'trellis_registry_service_credentials_reloads_total',
    help: 'New contents of TRELLIS_SERVICE_CREDENTIALS read since start, by result: applied (ok), or refused keeping the last good set (invalid).',
    labelNames: ['result'],
    registers: [registry],
  });
  for (const result of ['ok', 'invalid']) counter.inc({ result }, 0);
  return counter;
}

/** The service credentials in force, read when scraped. */
export function registerServiceCredentialsGauge(registry: Registry, credentials: { readonly size: number }): void {
  new Gauge({
    name: 'trellis_registry_service_credentials',
    help: "Service credentials (instance agents' secrets) the registry accepts, from the last good TRELLIS_SERVICE_CREDENTIALS.",
    registers: [registry],
    collect() {
      this.set(credentials.size);
    },
  });
}

function leasePoolTakes(registry: Registry): Counter<'result'> {
  const counter = new Counter({
    name: 'trellis_registry_lease_pool_takes_total',
    help: 'Instance registrations by where their lease came from: the pool of leases granted ahead (pooled), or a grant of their own because none was waiting (empty).',
    labelNames: ['result'],
    registers: [registry],
  });
  // Both series from the start, so they do not appear with the first registration of each kind.
  for (const result of ['pooled', 'empty']) counter.inc({ result }, 0);
  return counter;
}

/** When the etcd client certificate expires; registered only where there is one (an unset gauge would read 0). */
export function registerEtcdClientCertExpiry(registry: Registry, certPem: Buffer): void {
  registerCertificateExpiryGauge(
    registry,
    {
      name: 'trellis_registry_etcd_client_cert_expiry_timestamp_seconds',
      help: 'When the client certificate this process presents to etcd (TRELLIS_ETCD_CERT_FILE, read at start) expires, as a Unix time; a renewed file takes effect at the next restart.',
    },
    certPem,
    'TRELLIS_ETCD_CERT_FILE',
  );
}

/** Leases granted ahead and waiting for registrations, read when scraped. */
export function registerLeasePoolGauge(registry: Registry, pool: { readonly size: number }): void {
  new Gauge({
    name: 'trellis_registry_lease_pool_leases',
    help: 'Leases granted ahead and kept alive, waiting for instance registrations (revoked when idle and on shutdown).',
    registers: [registry],
    collect() {
      this.set(pool.size);
    },
  });
}

/** Gauges of the view, read when scraped. */
export function registerViewGauges(registry: Registry, view: ViewGauges): void {
  new Gauge({
    name: 'trellis_registry_view_age_seconds',
    help: 'Seconds since the in-memory view last followed etcd (0 while its watch runs); reads are served from it meanwhile.',
    registers: [registry],
    collect() {
      this.set(view.ageSeconds());
    },
  });
  new Gauge({
    name: 'trellis_registry_view_revision',
    help: 'The etcd revision the in-memory view reflects.',
    registers: [registry],
    collect() {
      this.set(Number(view.revision));
    },
  });
}
