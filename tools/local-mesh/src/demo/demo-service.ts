// One instance of a demo service, run as its own process (grpc-js-xds reads its
// bootstrap once per process): a gRPC server that requires a mesh token from its
// callers, registers itself with the registry and heartbeats, and answers each
// call by first calling, through the mesh, every service it declared.
import { credentials, Metadata, Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import {
  CALLER_KEY_ID_METADATA_KEY,
  CALLER_METADATA_KEY,
  meshServerInterceptor,
  meshTokenInterceptor,
  MeshTokenClient,
  MeshTokenVerifier,
} from '@trellis/sdk-node';
import { CallReply, HopClient, HopService, type CallRequest, type HopRecord } from '@trellis/envoy-types/trellis/demo/v1/hop';

const cfg = {
  service: required('DEMO_SERVICE'),
  instanceId: required('DEMO_INSTANCE_ID'),
  /** 0: the OS picks (several instances share this host); the chosen port is registered and logged. */
  port: Number(process.env['DEMO_PORT'] ?? 0),
  dependencies: (process.env['DEMO_DEPENDENCIES'] ?? '').split(',').filter(Boolean),
  isPublic: process.env['DEMO_PUBLIC'] === 'true',
  registryUrl: required('TRELLIS_REGISTRY_URL'),
  adminToken: required('TRELLIS_ADMIN_TOKEN'),
  authzUrl: required('TRELLIS_AUTHZ_URL'),
  serviceSecret: required('TRELLIS_SERVICE_SECRET'),
  xdsServer: required('TRELLIS_XDS_SERVER'),
  issuer: process.env['TRELLIS_TOKEN_ISSUER'] ?? 'trellis',
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

async function registry(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${cfg.registryUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${cfg.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(3_000),
  });
}

async function main(): Promise<void> {
  // The proxyless client names itself like a sidecar does: node.cluster = service, node.id = instance.
  process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify({
    xds_servers: [{ server_uri: cfg.xdsServer, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: cfg.instanceId, cluster: cfg.service, locality: { zone: 'local' } },
  });
  const xds = await import('@grpc/grpc-js-xds');
  xds.register();

  const tokens = new MeshTokenClient({ authzUrl: cfg.authzUrl, service: cfg.service, secret: cfg.serviceSecret });
  const downstream = new Map(
    cfg.dependencies.map((dep) => [
      dep,
      new HopClient(`xds:///${dep}`, credentials.createInsecure(), { interceptors: [meshTokenInterceptor(tokens, dep)] }),
    ]),
  );

  const interceptors = cfg.isPublic
    ? []
    : [
        meshServerInterceptor(
          new MeshTokenVerifier({ service: cfg.service, issuer: cfg.issuer, keys: `${cfg.authzUrl}/.well-known/jwks.json` }),
          (reason) => log('refused a call', { reason }),
        ),
      ];
  const server = new Server({ interceptors });
  server.addService(HopService, {
    call: (call: ServerUnaryCall<CallRequest, CallReply>, callback: sendUnaryData<CallReply>) => {
      const own: HopRecord = {
        service: cfg.service,
        instance: cfg.instanceId,
        caller: String(call.metadata.get(CALLER_METADATA_KEY)[0] ?? ''),
        tokenAudience: cfg.isPublic ? '' : cfg.service,
        tokenKeyId: String(call.metadata.get(CALLER_KEY_ID_METADATA_KEY)[0] ?? ''),
      };
      Promise.all(
        [...downstream].map(
          ([dep, client]) =>
            new Promise<HopRecord[]>((resolve, reject) =>
              client.call({ origin: call.request.origin }, new Metadata(), { deadline: Date.now() + 3_000 }, (err, reply) =>
                err ? reject(new Error(`${dep}: ${err.details || err.message}`)) : resolve(reply!.hops),
              ),
            ),
        ),
      ).then(
        (children) => callback(null, CallReply.fromPartial({ hops: [own, ...children.flat()] })),
        (err: Error) => callback({ code: 14, details: `${cfg.service} → ${err.message}` }),
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${cfg.port}`, ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );

  const registered = await registry('POST', `/api/v1/services/${cfg.service}/instances`, {
    id: cfg.instanceId,
    address: '127.0.0.1',
    port,
    platform: 'vm',
    labels: { version: 'v1' },
    locality: { zone: 'local' },
    ttlSeconds: 10,
  });
  if (!registered.ok) throw new Error(`registering the instance failed: ${registered.status} ${await registered.text()}`);
  log('serving and registered', { port, dependencies: cfg.dependencies });

  const heartbeat = setInterval(() => {
    registry('PUT', `/api/v1/services/${cfg.service}/instances/${cfg.instanceId}/heartbeat`).then(
      (res) => res.ok || log('heartbeat refused', { status: res.status }),
      (err: Error) => log('heartbeat failed', { error: err.message }),
    );
  }, 3_000);

  const shutdown = async () => {
    clearInterval(heartbeat);
    await registry('DELETE', `/api/v1/services/${cfg.service}/instances/${cfg.instanceId}`).catch(() => undefined);
    for (const client of downstream.values()) client.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
}

main().catch((err: Error) => {
  log('failed', { error: err.message });
  process.exit(1);
});
