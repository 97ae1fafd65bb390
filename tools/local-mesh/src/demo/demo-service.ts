// One instance of a demo service, run as its own process (grpc-js-xds reads its
// bootstrap once per process) under `trellis agent`, which registers it once its
// gRPC health check answers SERVING, heartbeats, and drains it on SIGTERM. The
// service itself is a gRPC server that requires a mesh token from its callers and
// answers each call by first calling, through the mesh, every service it declared.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { credentials, Metadata, Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { serviceOfPeerCertificate, uriSans } from '@trellis/pki';
import {
  CALLER_KEY_ID_METADATA_KEY,
  CALLER_METADATA_KEY,
  certificateFilesIn,
  createProxylessServer,
  currentCallTrace,
  meshServerInterceptor,
  meshTokenInterceptor,
  MeshTokenClient,
  MeshTokenVerifier,
  PROXYLESS_CHANNEL_OPTIONS,
  traceContextInterceptor,
  traceContextServerInterceptor,
} from '@trellis/sdk-node';
import { HealthImplementation } from 'grpc-health-check';
import { CallReply, HopClient, HopService, type CallRequest, type HopRecord } from '@trellis/envoy-types/trellis/demo/v1/hop';

const cfg = {
  service: required('DEMO_SERVICE'),
  instanceId: required('DEMO_INSTANCE_ID'),
  /** Chosen by the local mesh (several instances share this host); the agent registers the same port. */
  port: Number(required('DEMO_PORT')),
  dependencies: (process.env['DEMO_DEPENDENCIES'] ?? '').split(',').filter(Boolean),
  isPublic: process.env['DEMO_PUBLIC'] === 'true',
  authzUrl: required('TRELLIS_AUTHZ_URL'),
  /** The agent's certificate folder and authz's mTLS port: tokens for this instance's workload certificate. */
  certificateDir: required('TRELLIS_CERTIFICATE_DIR'),
  authzMtlsUrl: required('TRELLIS_AUTHZ_MTLS_URL'),
  xdsServer: required('TRELLIS_XDS_SERVER'),
  issuer: process.env['TRELLIS_TOKEN_ISSUER'] ?? 'trellis',
  /**
   * mTLS between services (the local mesh's default): the agent hands over GRPC_XDS_BOOTSTRAP
   * naming its xDS relay and the certificate files; the app's port then speaks what the control
   * plane says (TLS, RBAC) and the agent probes health on this plaintext port.
   */
  mtls: process.env['DEMO_MTLS'] === 'true',
  healthPort: Number(process.env['DEMO_HEALTH_PORT'] ?? 0),
};

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`demo-service: ${name} is required\n`);
    process.exit(2);
  }
  return value;
}

function log(msg: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(
    `${JSON.stringify({ time: new Date().toISOString(), service: cfg.service, instance: cfg.instanceId, msg, ...fields })}\n`,
  );
}

async function main(): Promise<void> {
  const { mtls } = cfg;
  // With the agent's relay, its bootstrap (GRPC_XDS_BOOTSTRAP) names the relay and the certificate files.
  if (!process.env['GRPC_XDS_BOOTSTRAP']) {
    // The proxyless client names itself like a sidecar does: node.cluster = service, node.id = instance.
    process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify({
      xds_servers: [{ server_uri: cfg.xdsServer, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: cfg.instanceId, cluster: cfg.service, locality: { zone: 'local' } },
    });
  }
  process.env['GRPC_XDS_EXPERIMENTAL_RBAC'] = 'true';
  const xds = await import('@grpc/grpc-js-xds');
  xds.register();

  const files = certificateFilesIn(cfg.certificateDir);
  const trustDomain = trustDomainOf(files.certificateFile);
  const tokens = new MeshTokenClient({ authzUrl: cfg.authzMtlsUrl, service: cfg.service, certificates: files });
  // TLS where the control plane's cluster for the callee says so (permissive or strict), with the agent's certificate.
  const channelCredentials = mtls ? new xds.XdsChannelCredentials(credentials.createInsecure()) : credentials.createInsecure();
  const downstream = new Map(
    cfg.dependencies.map((dep) => [
      dep,
      new HopClient(`xds:///${dep}`, channelCredentials, {
        ...PROXYLESS_CHANNEL_OPTIONS,
        // A child traceparent of the call being handled, then the A→B token.
        interceptors: [traceContextInterceptor(), meshTokenInterceptor(tokens, dep)],
      }),
    ]),
  );

  // The caller's trace (or a new one at the entry point) for everything the handler does, then the token check.
  const interceptors = [
    traceContextServerInterceptor(),
    ...(cfg.isPublic
      ? []
      : [
          meshServerInterceptor(
            new MeshTokenVerifier({ service: cfg.service, issuer: cfg.issuer, keys: `${cfg.authzUrl}/.well-known/jwks.json` }),
            (reason) => log('refused a call', { reason }),
          ),
        ]),
  ];
  // With mTLS, the SDK's XdsServer: its TLS has the mesh's limits (a silent connection is closed in seconds, not 120 s).
  const server = mtls
    ? await createProxylessServer({ interceptors, onTlsRefused: (reason) => log('closed a TLS connection', { reason }) })
    : new Server({ interceptors });
  server.addService(HopService, {
    call: (call: ServerUnaryCall<CallRequest, CallReply>, callback: sendUnaryData<CallReply>) => {
      const own: HopRecord = {
        service: cfg.service,
        instance: cfg.instanceId,
        caller: String(call.metadata.get(CALLER_METADATA_KEY)[0] ?? ''),
        tokenAudience: cfg.isPublic ? '' : cfg.service,
        tokenKeyId: String(call.metadata.get(CALLER_KEY_ID_METADATA_KEY)[0] ?? ''),
        // Who the TLS handshake proved, apart from what the token says.
        peerIdentity: mtls ? (serviceOfPeerCertificate(call.getAuthContext().sslPeerCertificate, trustDomain) ?? '') : '',
        traceId: currentCallTrace()?.traceId ?? '',
      };
      Promise.all(
        [...downstream].map(
          ([dep, client]) =>
            new Promise<HopRecord[]>((resolve, reject) =>
              client.call({ origin: call.request.origin }, new Metadata(), { deadline: Date.now() + 5_000 }, (err, reply) =>
                err ? reject(Object.assign(new Error(`${dep}: ${err.details || err.message}`), { code: err.code })) : resolve(reply!.hops),
              ),
            ),
        ),
      ).then(
        (children) => callback(null, CallReply.fromPartial({ hops: [own, ...children.flat()] })),
        // The downstream's own status, not UNAVAILABLE for everything: that would make callers retry and hide the fault.
        (err: Error & { code?: number }) => callback({ code: err.code ?? 13 /* INTERNAL */, details: `${cfg.service} → ${err.message}` }),
      );
    },
  });
  // The agent registers this instance once the standard gRPC health check answers SERVING.
  const health = new HealthImplementation({ '': 'SERVING' });
  // With mTLS the agent (which holds no client certificate for itself) probes a plaintext health port.
  const healthServer = mtls ? new Server() : server;
  health.addToServer(healthServer);
  const bind = (target: Server, port: number, creds: ServerCredentials) =>
    new Promise<number>((resolve, reject) =>
      target.bindAsync(`127.0.0.1:${port}`, creds, (err, bound) => (err ? reject(err) : resolve(bound))),
    );
  await bind(
    server,
    cfg.port,
    mtls ? new xds.XdsServerCredentials(ServerCredentials.createInsecure()) : ServerCredentials.createInsecure(),
  );
  if (healthServer !== server) await bind(healthServer, cfg.healthPort, ServerCredentials.createInsecure());
  log('serving', { port: cfg.port, dependencies: cfg.dependencies, mtls });

  // The agent has already drained and deregistered this instance when the SIGTERM comes.
  const shutdown = async () => {
    health.setStatus('', 'NOT_SERVING');
    for (const client of downstream.values()) client.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    if (healthServer !== server) await new Promise<void>((resolve) => healthServer.tryShutdown(() => resolve()));
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
}

/** The trust domain of this workload's own certificate (spiffe://<trust domain>/svc/<service>). */
function trustDomainOf(certificateFile: string): string {
  const spiffe = uriSans(new X509Certificate(readFileSync(certificateFile)).subjectAltName).find((uri) => uri.startsWith('spiffe://'));
  return spiffe ? new URL(spiffe).host : 'trellis.local';
}

main().catch((err: Error) => {
  log('failed', { error: err.message });
  process.exit(1);
});
