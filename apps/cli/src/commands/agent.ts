// `trellis agent`: see agent/agent.ts for what it does, agent/agent-config.ts for its settings.
import type { Command } from 'commander';
import { Option } from 'commander';
import { AgentConfigError, resolveAgentConfig, type AgentFlags } from '../agent/agent-config';
import { runAgent } from '../agent/run-agent';
import { addSidecarBootstrapOptions } from '../bootstrap/sidecar-options';
import { CliError } from '../output';

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function registerAgentCommand(program: Command): void {
  const command = program
    .command('agent')
    .summary('run beside one instance: register it while healthy, heartbeat, drain on SIGTERM')
    .description(
      [
        'Runs beside one workload instance. Registers it with the registry once its local health check passes,',
        'keeps the lease alive, withdraws it after N failed checks and registers it again when they pass. On',
        'SIGTERM it marks the instance draining (proxies stop sending new calls), waits the drain period, then',
        'deregisters and exits 0. Registry and etcd outages are retried with backoff and jitter; a lost lease is',
        're-registered. Authenticates with the service credential (the secret authz takes on POST /v1/token).',
        '\n',
        'After `--`, the app itself: the agent starts it, and on SIGTERM drains before stopping it.',
        'Every flag has a TRELLIS_* variable (shown with each flag); flags win.',
      ]
        .join(' ')
        .replace(/ ?\n ?/g, '\n\n'),
    )
    .usage('[options] [-- app command...]')
    .addOption(new Option('--service <name>', 'mesh service this instance belongs to').env('TRELLIS_SERVICE'))
    .addOption(
      new Option('--instance-id <id>', 'instance id and xDS node id (default: the hostname; the pod name)').env('TRELLIS_INSTANCE_ID'),
    )
    .addOption(new Option('--address <ip>', 'IP callers reach it at (default: first non-loopback IPv4; the pod IP)').env('TRELLIS_ADDRESS'))
    .addOption(new Option('--port <port>', 'port callers reach it at').env('TRELLIS_PORT'))
    .addOption(new Option('--region <region>', 'locality region').env('TRELLIS_REGION'))
    .addOption(new Option('--zone <zone>', 'locality zone (Kubernetes: the topology.kubernetes.io/zone label)').env('TRELLIS_ZONE'))
    .addOption(new Option('--sub-zone <subZone>', 'locality sub-zone (Kubernetes: the node name)').env('TRELLIS_SUB_ZONE'))
    .addOption(new Option('--label <key=value>', 'instance label, repeatable (TRELLIS_LABELS: comma-separated)').argParser(collect))
    .addOption(new Option('--platform <platform>', 'vm or k8s (default: k8s inside a pod)').env('TRELLIS_PLATFORM'))
    .addOption(new Option('--weight <n>', 'load-balancing weight 1..128').env('TRELLIS_WEIGHT'))
    .addOption(
      new Option('--credential-file <path>', "file with the service's secret (default: $CREDENTIALS_DIRECTORY/service-secret)").env(
        'TRELLIS_SERVICE_SECRET_FILE',
      ),
    )
    .addOption(
      new Option(
        '--health-check <check>',
        'http://host:port/path, grpc://host:port[/service], tcp://host:port or none (default: tcp to --port)',
      ).env('TRELLIS_HEALTH_CHECK'),
    )
    .addOption(new Option('--health-interval <duration>', 'time between checks (default 2s)').env('TRELLIS_HEALTH_INTERVAL'))
    .addOption(new Option('--health-timeout <duration>', 'time limit of one check (default 1s)').env('TRELLIS_HEALTH_TIMEOUT'))
    .addOption(
      new Option('--failure-threshold <n>', 'failed checks in a row that withdraw the instance (default 3)').env(
        'TRELLIS_HEALTH_FAILURE_THRESHOLD',
      ),
    )
    .addOption(
      new Option('--success-threshold <n>', 'passed checks in a row that register it (default 1)').env('TRELLIS_HEALTH_SUCCESS_THRESHOLD'),
    )
    .addOption(new Option('--ttl <seconds>', 'lease TTL 5..3600; heartbeats every third of it (default 15)').env('TRELLIS_TTL_SECONDS'))
    .addOption(
      new Option('--drain <duration>', 'how long a draining instance keeps serving before deregistering (default 10s)').env(
        'TRELLIS_DRAIN',
      ),
    )
    .addOption(
      new Option('--http-host <host>', "the agent's own /healthz /readyz /metrics (default 0.0.0.0)").env('TRELLIS_AGENT_HTTP_HOST'),
    )
    .addOption(new Option('--http-port <port>', 'their port, 0 for any, off for none (default 15020)').env('TRELLIS_AGENT_HTTP_PORT'))
    .addOption(
      new Option('--envoy-bootstrap <path>', "render the Envoy sidecar's bootstrap here, and keep its xDS token fresh").env(
        'TRELLIS_ENVOY_BOOTSTRAP',
      ),
    )
    .addOption(new Option('--app-port <port>', 'with --envoy-bootstrap: where the app listens on 127.0.0.1').env('TRELLIS_APP_PORT'));
  addSidecarBootstrapOptions(command, 'with --envoy-bootstrap: ')
    .addOption(
      new Option('--authz <url>', "authz's HTTP URL: the mesh CA (--certificate-dir), xDS tokens (--envoy-bootstrap)").env(
        'TRELLIS_AUTHZ_URL',
      ),
    )
    .addOption(
      new Option(
        '--authz-mtls <url>',
        "authz's mTLS URL (https://…:8443): with --envoy-bootstrap and --certificate-dir, xDS tokens asked with the workload certificate",
      ).env('TRELLIS_AUTHZ_MTLS_URL'),
    )
    .addOption(
      new Option('--xds-token-file <path>', 'with --envoy-bootstrap: a static xDS token, when authz is not used').env(
        'TRELLIS_XDS_TOKEN_FILE',
      ),
    )
    .addOption(
      new Option(
        '--certificate-dir <dir>',
        'obtain the workload certificate from the mesh CA (--authz) and keep key.pem, cert.pem, ca.pem renewed here',
      ).env('TRELLIS_CERTIFICATE_DIR'),
    )
    .addOption(
      new Option('--k8s-token-file <path>', 'with --certificate-dir: prove the service with this projected ServiceAccount token').env(
        'TRELLIS_K8S_TOKEN_FILE',
      ),
    )
    .addOption(
      new Option('--trust-bundle-refresh <duration>', 'with --certificate-dir: how often the trust bundle is fetched (default 5m)').env(
        'TRELLIS_TRUST_BUNDLE_REFRESH',
      ),
    )
    .addOption(
      new Option(
        '--xds-relay <address>',
        'serve a local xDS relay for proxyless apps on 127.0.0.1:PORT or unix:/path; it reaches the control plane over mTLS',
      ).env('TRELLIS_XDS_RELAY'),
    )
    .addOption(new Option('--xds-server <host:port>', "with --xds-relay: the control plane's xDS address").env('TRELLIS_XDS_SERVER'))
    .addOption(
      new Option('--xds-server-ca-file <path>', "with --xds-relay: CA of the control plane's certificate (default: the mesh ca.pem)").env(
        'TRELLIS_XDS_SERVER_CA_FILE',
      ),
    )
    .addOption(
      new Option('--xds-server-name <name>', "with --xds-relay: the name in the control plane's certificate, if not the address").env(
        'TRELLIS_XDS_SERVER_NAME',
      ),
    )
    .addOption(
      new Option(
        '--xds-relay-streams-per-connection <n>',
        "with --xds-relay: streams per control-plane connection before another is opened; keep it below the control plane's cap (default 8)",
      ).env('TRELLIS_XDS_RELAY_STREAMS_PER_CONNECTION'),
    )
    .addOption(
      new Option(
        '--xds-relay-max-streams <n>',
        'with --xds-relay: streams the relay carries in all (each is one on the control plane); more are refused (default 64)',
      ).env('TRELLIS_XDS_RELAY_MAX_STREAMS'),
    )
    .addOption(
      new Option(
        '--xds-relay-max-client-streams <n>',
        'with --xds-relay: streams one app connection may hold (grpc-js-xds and Envoy open one); more are refused (default 16)',
      ).env('TRELLIS_XDS_RELAY_MAX_CLIENT_STREAMS'),
    )
    .addOption(
      new Option(
        '--xds-relay-max-connections <n>',
        'with --xds-relay: app connections open at once; more are closed at accept (default 64)',
      ).env('TRELLIS_XDS_RELAY_MAX_CONNECTIONS'),
    )
    .addOption(
      new Option(
        '--xds-relay-idle-timeout <duration>',
        'with --xds-relay: an app connection with no stream open this long is closed; 0: never (default 5m)',
      ).env('TRELLIS_XDS_RELAY_IDLE_TIMEOUT'),
    )
    .addOption(
      new Option('--grpc-bootstrap <path>', 'with --xds-relay: write the grpc-js-xds bootstrap here; the app gets GRPC_XDS_BOOTSTRAP').env(
        'TRELLIS_GRPC_BOOTSTRAP',
      ),
    )
    .addOption(new Option('--log-level <level>', 'pino log level').env('TRELLIS_LOG_LEVEL'))
    .argument('[command...]', 'the app to run under the agent (after --)')
    .action(async (command: string[], flags: AgentFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<{ registry?: string; controlPlane?: string }>();
      let config;
      try {
        config = resolveAgentConfig({ ...flags, registry: globals.registry, controlPlane: globals.controlPlane });
      } catch (err) {
        if (err instanceof AgentConfigError) throw new CliError(err.message, 2);
        throw err;
      }
      process.exitCode = await runAgent(config, command);
    });
}
