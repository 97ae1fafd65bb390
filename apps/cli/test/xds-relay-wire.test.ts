// The agent's xDS relay on the wire: it passes a response as large as the control plane may send
// (XDS_MAX_MESSAGE_BYTES, far above grpc-js's default 4 MiB receive limit), and on `localhost:PORT` it
// listens on every address localhost resolves to, as grpc-js's own bind did (resolved here as on a
// dual-stack host, 127.0.0.1 and ::1: this machine's /etc/hosts may name only one). The upstream here is a
// real grpc-js server with the control plane's send limit answering every request with one response
// over 4 MiB: building a mesh whose CDS exceeds 4 MiB in etcd would take minutes on a loaded machine,
// and what is under test is the relay's channel options, not the control plane's translation.
import { credentials, Server, ServerCredentials, type ClientDuplexStream, type ServerDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { TypeUrl } from '@trellis/envoy-types';
import { AggregatedDiscoveryServiceClient } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { DiscoveryRequest, DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { XDS_MAX_MESSAGE_BYTES } from '@trellis/mesh-contracts';
import { createLogger, createMetricsRegistry } from '@trellis/runtime';
import { rawBytesMethod } from '@trellis/testing';
import { createAgentMetrics } from '../src/agent/metrics';
import { ADS_METHODS, XdsRelay } from '../src/agent/xds-relay';
import { eventually } from './support/built-apps';

jest.setTimeout(120_000);

/** Above grpc-js's default receive limit (4 MiB), below the control plane's send limit. */
const LARGE_RESOURCE_BYTES = 6 * 1024 * 1024;

/** What `localhost` resolves to on a dual-stack host. */
const DUAL_STACK_LOCALHOST = ['127.0.0.1', '::1'];

/** A control plane's ADS as far as the relay sees it: one large CDS response to each request. */
async function startLargeResponseUpstream(): Promise<{ server: Server; address: string }> {
  const server = new Server({ 'grpc.max_send_message_length': XDS_MAX_MESSAGE_BYTES });
  server.addService(
    {
      sotw: rawBytesMethod(ADS_METHODS.sotw, 'bidi'),
    },
    {
      sotw: (call: ServerDuplexStream<Buffer, Buffer>) => {
        call.on('data', (message: Buffer) => {
          const request = DiscoveryRequest.decode(message);
          const response = DiscoveryResponse.fromPartial({
            versionInfo: '1',
            nonce: '1',
            typeUrl: request.typeUrl,
            resources: [{ typeUrl: request.typeUrl, value: Buffer.alloc(LARGE_RESOURCE_BYTES, 7) }],
          });
          call.write(Buffer.from(DiscoveryResponse.encode(response).finish()));
        });
        call.on('end', () => call.end());
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return { server, address: `127.0.0.1:${port}` };
}

type Outcome = { ok: true; resourceBytes: number } | { ok: false; code: number; details: string };

/** One SotW request as service a through `target`; the first response's resource size, or how the stream ended. */
async function ask(target: string): Promise<Outcome> {
  // An app that accepts what the control plane sends (grpc-js-xds's own channel keeps 4 MiB: docs/security.md).
  const client = new AggregatedDiscoveryServiceClient(target, credentials.createInsecure(), {
    'grpc.max_receive_message_length': XDS_MAX_MESSAGE_BYTES,
  });
  const stream: ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> = client.streamAggregatedResources();
  let outcome: Outcome | undefined;
  stream.on('data', (response: DiscoveryResponse) => (outcome ??= { ok: true, resourceBytes: response.resources[0]?.value.length ?? 0 }));
  stream.on('error', (err: ServiceError) => (outcome ??= { ok: false, code: err.code, details: err.details }));
  stream.write(DiscoveryRequest.fromPartial({ node: { id: 'a-1', cluster: 'a' }, typeUrl: TypeUrl.Cluster }));
  try {
    return await eventually('a response or an end', () => outcome);
  } finally {
    stream.cancel();
    client.close();
  }
}

describe('the xDS relay on the wire', () => {
  let upstream: { server: Server; address: string };
  let relay: XdsRelay;

  beforeAll(async () => {
    upstream = await startLargeResponseUpstream();
    relay = new XdsRelay({
      service: 'a',
      listen: { kind: 'tcp', host: 'localhost', port: 0 },
      upstream: upstream.address,
      credentials: async () => credentials.createInsecure(),
      logger: createLogger('agent', 'silent'),
      metrics: createAgentMetrics(createMetricsRegistry('agent')),
      resolveHost: async () => DUAL_STACK_LOCALHOST.map((address) => ({ address })),
    });
    await relay.start();
  });

  afterAll(async () => {
    await relay?.stop();
    upstream?.server.forceShutdown();
  });

  it('passes a response over 4 MiB, as large as the control plane may send', async () => {
    expect(await ask(relay.target)).toEqual({ ok: true, resourceBytes: LARGE_RESOURCE_BYTES });
  });

  it('listens on every address localhost resolves to, on one port', async () => {
    const port = Number(relay.target.split(':').pop());
    for (const address of DUAL_STACK_LOCALHOST) {
      const target = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
      expect({ target, outcome: await ask(target) }).toEqual({ target, outcome: { ok: true, resourceBytes: LARGE_RESOURCE_BYTES } });
    }
  });
});
