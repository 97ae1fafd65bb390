// Every control-plane metric, in one place. Names follow trellis_control_plane_…
// with _total/_seconds suffixes; labels are bounded (xDS type, protocol, proxy
// kind, result) — never a node id or service name.
import { Counter, Gauge, Histogram, type Metric, type Registry } from 'prom-client';
import { TYPE_SHORT_NAME, type XdsTypeUrl } from '@trellis/envoy-types';
import { registerCertificateExpiryGauge } from '@trellis/runtime';
import type { XdsCallbacks } from './xds/callbacks';

const P = 'trellis_control_plane_';

export interface ControlPlaneMetrics {
  callbacks: XdsCallbacks;
  /** One debounced rebuild: model + affected snapshots. */
  observeRebuild(seconds: number, result: { rebuilt: number; changed: number; reset: boolean }): void;
  translateErrors: Counter;
  inconsistentSnapshots: Counter;
  droppedInputs: Gauge;
  invalidRecords: Counter<'kind'>;
  etcdWatchDisconnects: Counter<'code'>;
  cacheIdentities: Gauge;
  cacheResources: Gauge;
  cacheBytes: Gauge;
  statusWrites: Counter<'result'>;
  statusFlushesDeferred: Counter;
  /** Where the status backlog gauge reads its value at scrape time (the proxy-status writer, once it exists). */
  readStatusBacklogFrom(source: () => number): void;
  meshRevision: Gauge;
  retainedEndpoints: Gauge;
  retentionsEngaged: Counter;
  /** Connections the xDS port's TLS guard closed before they were through their handshake and HTTP/2 preface. */
  tlsRefused: Counter<'reason'>;
  /** New contents of TRELLIS_ADMIN_TOKEN_FILE: applied (ok) or refused keeping the last good token (invalid). */
  adminTokenReloads: Counter<'result'>;
  /** Reloads of the xDS port's certificate, key and client CA files (changed, unchanged, error: the previous ones keep serving). */
  xdsTlsReloads: Counter<'result'>;
  /** xDS connections that reached their max age: GOAWAY sent, their ADS streams ended UNAVAILABLE (connection-age.ts). */
  connectionsAged: Counter;
  /** Where the pending-TLS-connections gauge reads its value at scrape time (the xDS server, once bound). */
  readTlsPendingFrom(source: () => number): void;
}

export function createControlPlaneMetrics(registry: Registry): ControlPlaneMetrics {
  const registers = [registry];
  let statusBacklog = (): number => 0;
  let tlsPending = (): number => 0;
  new Gauge({
    name: `${P}xds_tls_pending_connections`,
    help: 'Connections to the xDS port not yet through their TLS handshake and HTTP/2 preface (capped by TRELLIS_TLS_MAX_PENDING_CONNECTIONS)',
    registers,
    collect() {
      this.set(tlsPending());
    },
  });
  new Gauge({
    name: `${P}proxy_status_backlog`,
    help: 'Proxy status records changed but not yet written to etcd (writes are rate-limited; a backlog drains at the flush budget)',
    registers,
    collect() {
      this.set(statusBacklog());
    },
  });
  const connected = new Gauge({ name: `${P}xds_connected_proxies`, help: 'Open xDS streams', labelNames: ['protocol', 'kind'], registers });
  // What every response and ACK records (a first push to 5,000 sidecars makes ~100,000 such records) is tallied per
  // type here and rendered at scrape time, the same series as prom-client's labelled metrics, which hash and check
  // the label set on every call.
  const pushes = new ByTypeCounter(registry, { name: `${P}xds_pushes_total`, help: 'xDS responses sent (cf. pilot_xds_pushes)' });
  const acks = new ByTypeCounter(registry, { name: `${P}xds_acks_total`, help: 'xDS responses acknowledged' });
  const rejects = new Counter({
    name: `${P}xds_rejects_total`,
    help: 'xDS responses rejected by a proxy (NACK; cf. pilot_total_xds_rejects)',
    labelNames: ['type'],
    registers,
  });
  const stale = new Counter({
    name: `${P}xds_stale_requests_total`,
    help: 'Requests answering an old nonce (ignored)',
    labelNames: ['type'],
    registers,
  });
  const refused = new Counter({
    name: `${P}xds_streams_refused_total`,
    help: 'Streams refused at setup (bad node, credentials)',
    labelNames: ['reason'],
    registers,
  });
  const convergence = new ByTypeHistogram(registry, {
    name: `${P}proxy_convergence_seconds`,
    help: 'From the etcd change being seen to the proxy ACKing the config built from it (cf. pilot_proxy_convergence_time)',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  });
  const resources = new ByTypeHistogram(registry, {
    name: `${P}xds_response_resources`,
    help: 'Resources per xDS response',
    buckets: [0, 1, 2, 5, 10, 25, 50, 100, 250, 1000],
  });
  const bytes = new ByTypeHistogram(registry, {
    name: `${P}xds_response_bytes`,
    help: 'Encoded resource bytes per xDS response',
    buckets: [256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304],
  });
  const rebuild = new Histogram({
    name: `${P}rebuild_seconds`,
    help: 'Debounced rebuild: mesh model, affected snapshots',
    labelNames: ['reset'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const rebuiltIdentities = new Counter({ name: `${P}snapshots_rebuilt_total`, help: 'Proxy identity snapshots recomputed', registers });
  const changedIdentities = new Counter({
    name: `${P}snapshots_changed_total`,
    help: 'Proxy identity snapshots whose content changed',
    registers,
  });

  const type = (typeUrl: XdsTypeUrl) => TYPE_SHORT_NAME[typeUrl];
  return {
    callbacks: {
      onStreamOpen: (s) => connected.inc({ protocol: s.protocol, kind: s.identity.kind }),
      onStreamClosed: (s) => connected.dec({ protocol: s.protocol, kind: s.identity.kind }),
      onStreamRejected: (code) => refused.inc({ reason: code }),
      onResponse: (_s, r) => {
        pushes.inc(r.typeUrl);
        resources.observe(r.typeUrl, r.resources);
        bytes.observe(r.typeUrl, r.bytes);
      },
      onAck: (_s, typeUrl, _version, changedAt) => {
        acks.inc(typeUrl);
        if (changedAt > 0) convergence.observe(typeUrl, Math.max(0, Date.now() - changedAt) / 1000);
      },
      onNack: (_s, typeUrl) => rejects.inc({ type: type(typeUrl) }),
      onStaleRequest: (_s, typeUrl) => stale.inc({ type: type(typeUrl) }),
    },
    observeRebuild(seconds, result) {
      rebuild.observe({ reset: String(result.reset) }, seconds);
      rebuiltIdentities.inc(result.rebuilt);
      changedIdentities.inc(result.changed);
    },
    translateErrors: new Counter({
      name: `${P}translate_errors_total`,
      help: 'Proxy identities whose translation threw (last good snapshot kept)',
      registers,
    }),
    inconsistentSnapshots: new Counter({
      name: `${P}snapshots_inconsistent_total`,
      help: 'Translated proxy identity snapshots refused before publishing: a missing RDS/EDS name or a listener address bound twice (last good snapshot kept)',
      registers,
    }),
    droppedInputs: new Gauge({
      name: `${P}model_dropped_inputs`,
      help: 'Registry inputs left out of the mesh model (see /debug/model)',
      registers,
    }),
    etcdWatchDisconnects: new Counter({
      name: `${P}etcd_watch_disconnects_total`,
      help: "Times the connected mesh watch on etcd broke, by gRPC status (unavailable: the connection dropped, e.g. a keepalive ping unanswered; resource_exhausted: etcd's GOAWAY too_many_pings; ended: etcd ended the stream); each reconnects and resumes from its revision",
      labelNames: ['code'],
      registers,
    }),
    invalidRecords: new Counter({
      name: `${P}invalid_records_total`,
      help: 'Unusable values read from etcd, each counted once, by kind (service, instance, meshSettings, authzKey); left out of the model',
      labelNames: ['kind'],
      registers,
    }),
    cacheIdentities: new Gauge({ name: `${P}snapshot_identities`, help: 'Proxy identities with a cached snapshot', registers }),
    cacheResources: new Gauge({
      name: `${P}snapshot_shared_resources`,
      help: 'Distinct encoded resources shared by the snapshots',
      registers,
    }),
    cacheBytes: new Gauge({ name: `${P}snapshot_shared_resource_bytes`, help: 'Bytes of distinct encoded resources held', registers }),
    statusWrites: new Counter({
      name: `${P}proxy_status_writes_total`,
      help: 'Proxy status writes to etcd',
      labelNames: ['result'],
      registers,
    }),
    statusFlushesDeferred: new Counter({
      name: `${P}proxy_status_flushes_deferred_total`,
      help: 'Proxy status flushes that waited for the xDS fan-out to finish translating (the backlog waits with them)',
      registers,
    }),
    readStatusBacklogFrom: (source) => {
      statusBacklog = source;
    },
    meshRevision: new Gauge({ name: `${P}mesh_revision`, help: 'etcd revision of the mesh model being served', registers }),
    retainedEndpoints: new Gauge({
      name: `${P}retained_endpoints`,
      help: 'Endpoints whose lease expired in a mass expiry, still served for the grace period (see /debug/model)',
      registers,
    }),
    retentionsEngaged: new Counter({
      name: `${P}endpoint_retentions_total`,
      help: 'Times a service lost most of its endpoints to lease expiry at once and retention kept them',
      registers,
    }),
    tlsRefused: new Counter({
      name: `${P}xds_tls_connections_refused_total`,
      help: 'Connections to the xDS port closed before their TLS handshake and HTTP/2 preface were through (too_many_pending, handshake_timeout, handshake_failed, preface_timeout)',
      labelNames: ['reason'],
      registers,
    }),
    xdsTlsReloads: new Counter({
      name: `${P}xds_tls_reloads_total`,
      help: "Reloads of the xDS port's TLS files by result (changed, unchanged, error: the previous certificate and client CA keep serving)",
      labelNames: ['result'],
      registers,
    }),
    adminTokenReloads: new Counter({
      name: `${P}admin_token_reloads_total`,
      help: 'New contents of TRELLIS_ADMIN_TOKEN_FILE read since start, by result: applied (ok), or refused keeping the last good token (invalid)',
      labelNames: ['result'],
      registers,
    }),
    connectionsAged: new Counter({
      name: `${P}xds_connections_aged_total`,
      help: 'xDS connections that reached their max connection age: sent GOAWAY, their ADS streams ended with UNAVAILABLE',
      registers,
    }),
    readTlsPendingFrom: (source) => {
      tlsPending = source;
    },
  };
}

/** When the etcd client certificate expires; registered only where there is one (an unset gauge would read 0). */
export function registerEtcdClientCertExpiry(registry: Registry, certPem: Buffer): void {
  registerCertificateExpiryGauge(
    registry,
    {
      name: `${P}etcd_client_cert_expiry_timestamp_seconds`,
      help: 'When the client certificate this process presents to etcd (TRELLIS_ETCD_CERT_FILE, read at start) expires, as a Unix time; a renewed file takes effect at the next restart.',
    },
    certPem,
    'TRELLIS_ETCD_CERT_FILE',
  );
}

/**
 * A counter whose one label is the xDS type: counted in a number per type, handed to a prom-client
 * counter (the series scraped) when the registry collects it.
 */
class ByTypeCounter {
  private readonly pending = new Map<XdsTypeUrl, number>();

  constructor(registry: Registry, options: { name: string; help: string }) {
    const pending = this.pending;
    new Counter({
      ...options,
      labelNames: ['type'],
      registers: [registry],
      collect() {
        for (const [typeUrl, n] of pending) this.inc({ type: TYPE_SHORT_NAME[typeUrl] }, n);
        pending.clear();
      },
    });
  }

  inc(typeUrl: XdsTypeUrl): void {
    this.pending.set(typeUrl, (this.pending.get(typeUrl) ?? 0) + 1);
  }
}

interface TypeTally {
  /** Observations per bucket (not cumulative), in the order of the bounds. */
  buckets: number[];
  sum: number;
  count: number;
}

/**
 * A histogram whose one label is the xDS type: an observation adds to numbers kept per type. The registry
 * renders it as it renders a prom-client histogram with these buckets (the same lines, labels in the same
 * order), so nothing downstream can tell them apart.
 */
export class ByTypeHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  private readonly bounds: readonly number[];
  private tallies = new Map<XdsTypeUrl, TypeTally>();

  constructor(registry: Registry, options: { name: string; help: string; buckets: readonly number[] }) {
    this.name = options.name;
    this.help = options.help;
    this.bounds = [...options.buckets].sort((a, b) => a - b);
    // The registry asks a metric only for its name, get() and reset(); its type names prom-client's four classes.
    registry.registerMetric(this as unknown as Metric);
  }

  observe(typeUrl: XdsTypeUrl, value: number): void {
    let tally = this.tallies.get(typeUrl);
    // The sum starts as -0, which V8 stores as a double: the field has that representation from the first tally
    // on, so the first fractional (seconds) or large (bytes) sum does not change the tallies' layout and
    // deoptimise observe() and its callers in the first changes after start-up. -0 renders as "0".
    if (!tally) this.tallies.set(typeUrl, (tally = { buckets: this.bounds.map(() => 0), sum: -0, count: 0 }));
    tally.sum += value;
    tally.count++;
    // The first bound at or above the value (as prom-client's findBound); above them all, only +Inf counts it.
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        tally.buckets[i]!++;
        break;
      }
    }
  }

  /** prom-client's histogram export for the text format: cumulative buckets, +Inf, sum and count per type, types in first-use order. */
  getForPromString(): Promise<HistogramExport> {
    const values: HistogramValue[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const [typeUrl, tally] of this.tallies) {
      const sharedLabels = { type: TYPE_SHORT_NAME[typeUrl] };
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += tally.buckets[i]!;
        values.push({ labels: { le }, sharedLabels, value: cumulative, metricName: bucketName, exemplar: null });
      });
      values.push({ labels: { le: '+Inf' }, sharedLabels, value: tally.count, metricName: bucketName, exemplar: null });
      values.push({ labels: {}, sharedLabels, value: tally.sum, metricName: `${this.name}_sum` });
      values.push({ labels: {}, sharedLabels, value: tally.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  /** The same with the type among each value's labels (prom-client's JSON form). */
  async get(): Promise<HistogramExport> {
    const exported = await this.getForPromString();
    const values = exported.values.map(({ labels, sharedLabels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } }));
    return { ...exported, values };
  }

  reset(): void {
    this.tallies = new Map();
  }
}

interface HistogramValue {
  labels: { le?: number | string; type?: string };
  sharedLabels?: { type: string };
  value: number;
  metricName: string;
  /** Buckets carry none (exemplars are off), as prom-client's say. */
  exemplar?: null;
}

interface HistogramExport {
  name: string;
  help: string;
  type: string;
  values: HistogramValue[];
  aggregator: string;
}
