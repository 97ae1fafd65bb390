// The agent's Prometheus metrics (trellis_agent_…), all defined here.
import { Counter, Gauge, type Registry } from 'prom-client';

export interface AgentMetrics {
  registered: Gauge;
  draining: Gauge;
  healthChecks: Counter<'result'>;
  withdrawals: Counter;
  leasesLost: Counter;
  registryErrors: Counter<'kind'>;
  certificatesIssued: Counter;
  certificateErrors: Counter<'attempt'>;
  certificateExpiry: Gauge;
  trustBundleRoots: Gauge;
  xdsRelayStreams: Gauge<'variant'>;
  xdsRelayRefused: Counter<'reason'>;
  xdsRelayUpstreams: Gauge;
  xdsRelayConnectionsRefused: Counter<'reason'>;
}

export function createAgentMetrics(registry: Registry): AgentMetrics {
  return {
    registered: new Gauge({ name: 'trellis_agent_registered', help: '1 while the instance is registered', registers: [registry] }),
    draining: new Gauge({
      name: 'trellis_agent_draining',
      help: '1 while the instance drains before deregistering',
      registers: [registry],
    }),
    healthChecks: new Counter({
      name: 'trellis_agent_health_checks_total',
      help: "The app's local health checks by result (pass, fail)",
      labelNames: ['result'],
      registers: [registry],
    }),
    withdrawals: new Counter({
      name: 'trellis_agent_withdrawals_total',
      help: 'Times the instance was withdrawn because its health check failed',
      registers: [registry],
    }),
    leasesLost: new Counter({
      name: 'trellis_agent_leases_lost_total',
      help: 'Heartbeats that found the lease gone, after which the instance was registered again',
      registers: [registry],
    }),
    registryErrors: new Counter({
      name: 'trellis_agent_registry_errors_total',
      help: 'Failed registry calls by kind (transient: unreachable or 5xx; refused: 4xx), each retried with backoff',
      labelNames: ['kind'],
      registers: [registry],
    }),
    certificatesIssued: new Counter({
      name: 'trellis_agent_certificates_issued_total',
      help: 'Workload certificates obtained from the mesh CA (the first one and each renewal)',
      registers: [registry],
    }),
    certificateErrors: new Counter({
      name: 'trellis_agent_certificate_errors_total',
      help: 'Failed mesh CA calls by attempt (certificate, trust-bundle), each retried with backoff',
      labelNames: ['attempt'],
      registers: [registry],
    }),
    certificateExpiry: new Gauge({
      name: 'trellis_agent_certificate_expiry_timestamp_seconds',
      help: 'When the held workload certificate expires (Unix time)',
      registers: [registry],
    }),
    trustBundleRoots: new Gauge({
      name: 'trellis_agent_trust_bundle_roots',
      help: 'Roots in the trust bundle on disk (two during a CA rotation)',
      registers: [registry],
    }),
    xdsRelayStreams: new Gauge({
      name: 'trellis_agent_xds_relay_streams',
      help: 'ADS streams the local xDS relay carries now, by variant (sotw, delta)',
      labelNames: ['variant'],
      registers: [registry],
    }),
    xdsRelayRefused: new Counter({
      name: 'trellis_agent_xds_relay_refused_total',
      help: 'Streams the xDS relay refused, by reason (node: another service or no node; not-local; no-certificate; too-many-streams, too-many-streams-per-connection; first-request-timeout)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    xdsRelayUpstreams: new Gauge({
      name: 'trellis_agent_xds_relay_upstream_connections',
      help: 'Connections the xDS relay holds to the control plane (streams are spread over them under its per-connection cap)',
      registers: [registry],
    }),
    xdsRelayConnectionsRefused: new Counter({
      name: 'trellis_agent_xds_relay_connections_refused_total',
      help: 'Client connections the xDS relay closed, by reason (too_many_connections at accept; preface_timeout: no HTTP/2 preface in time)',
      labelNames: ['reason'],
      registers: [registry],
    }),
  };
}
