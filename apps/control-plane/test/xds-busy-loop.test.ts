// A busy control plane keeps its proxies. grpc-js judges its keepalive pings' answers with a timer,
// and Node runs due timers before it reads sockets: a turn longer than the ping's timeout (a first
// push on a loaded host: ~1.3 CPU-s turns took ~10 s at load 15) closed every connection whose ping
// was in flight though the proxy had answered, and every such proxy reconnected at once. Here the
// control plane's own process is kept busy in synchronous turns while an ADS stream is open.
import { credentials, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { TypeUrl } from '@trellis/envoy-types';
import { AggregatedDiscoveryServiceClient } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { DiscoveryRequest, type DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { busyTurns, startTcpProxy, type TcpProxy } from '@trellis/testing';
import { testNode } from './support/ads-client';
import {
  eventually,
  startControlPlaneHarness,
  TEST_CONTROL_PLANE_OPTIONS,
  type ControlPlaneHarness,
} from './support/control-plane-harness';

jest.setTimeout(180_000);

/** Each synchronous turn; a ping and its answer each need a turn's gap to cross the proxy. */
const TURN_MS = 5_000;

interface OpenStream {
  call: ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;
  responses: DiscoveryResponse[];
  errors: ServiceError[];
  close(): void;
}

describe.each([
  ['a keepalive timeout shorter than a busy turn (the fault)', { time: 1_000, timeout: 3_000 }, 'dropped'],
  ['the default keepalive timeout', { time: 1_000, timeout: TEST_CONTROL_PLANE_OPTIONS.TRELLIS_XDS_KEEPALIVE_TIMEOUT_MS }, 'kept'],
] as const)('an ADS stream while the control plane is busy, with %s', (_name, keepalive, outcome) => {
  let h: ControlPlaneHarness;
  /**
   * The proxy's way to the control plane, in the control plane's process: a ping and its answer each wait for
   * this process to read and forward them, as over a network they take longer than the moment before the next turn.
   */
  let proxy: TcpProxy;

  beforeAll(async () => {
    h = await startControlPlaneHarness({
      TRELLIS_XDS_KEEPALIVE_TIME_MS: keepalive.time,
      TRELLIS_XDS_KEEPALIVE_TIMEOUT_MS: keepalive.timeout,
    });
    await h.store.createService({ name: 'a', team: 'core', protocol: 'http', port: 8080, dependencies: [{ service: 'b' }] }, 'test');
    await h.store.createService({ name: 'b', team: 'core', protocol: 'http', port: 8080 }, 'test');
    const [host, port] = h.xdsAddress.split(':');
    proxy = await startTcpProxy({ host: host!, port: Number(port) });
  });
  afterAll(async () => {
    await proxy?.close();
    await h?.stop();
  });

  async function openStream(): Promise<OpenStream> {
    const client = new AggregatedDiscoveryServiceClient(`${proxy.host}:${proxy.port}`, credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
    });
    const call = client.streamAggregatedResources();
    const stream: OpenStream = { call, responses: [], errors: [], close: () => (call.cancel(), client.close()) };
    call.on('error', (err: ServiceError) => stream.errors.push(err));
    call.on('data', (response: DiscoveryResponse) => {
      stream.responses.push(response);
      call.write(
        DiscoveryRequest.fromPartial({ typeUrl: response.typeUrl, versionInfo: response.versionInfo, responseNonce: response.nonce }),
      );
    });
    call.write(DiscoveryRequest.fromPartial({ node: testNode('a', 'a-busy'), typeUrl: TypeUrl.Cluster }));
    await eventually('the first CDS response', () => stream.responses.length > 0, 60_000);
    return stream;
  }

  it(outcome === 'dropped' ? 'is dropped though the proxy answered every ping' : 'is kept, and gets the next change', async () => {
    const stream = await openStream();
    try {
      if (outcome === 'dropped') {
        await busyTurns(8, TURN_MS, () => stream.errors.length > 0);
        await eventually('the stream ended', () => stream.errors.length > 0, 60_000);
        expect(stream.errors[0]!.details).toMatch(/Connection dropped|Received RST_STREAM|GOAWAY|closed/i);
        return;
      }
      expect(await busyTurns(5, TURN_MS)).toBe(5);
      const before = stream.responses.length;
      await h.store.createService({ name: 'c', team: 'core', protocol: 'http', port: 8080 }, 'test');
      await h.store.updateService(
        { name: 'a', team: 'core', protocol: 'http', port: 8080, dependencies: [{ service: 'b' }, { service: 'c' }] },
        'test',
      );
      await eventually('the change after the busy turns', () => stream.responses.length > before, 60_000);
      expect(stream.errors).toEqual([]);
    } finally {
      stream.close();
    }
  });
});
