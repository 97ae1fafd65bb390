// What a local client may cost the agent's xDS relay, each limit shown by performing the abuse against a
// real relay (in process, on a Unix socket as in production) in front of a real control plane (its own
// process, etcd-fed; plaintext xDS here, which the relay's credentials() allows — the mTLS upstream is
// xds-relay.test.ts's). Attacks: more streams on one connection than allowed, more streams than the relay
// carries in all, a stream that never sends a request, a connection that never speaks HTTP/2, more
// connections than allowed, a connection that opens no stream. Meanwhile an Envoy-shaped stream (one
// connection, one ADS stream) keeps being served. Limits are set small here; the defaults are in
// DEFAULT_RELAY_LIMITS.
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as http2Connect } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { TypeUrl } from '@trellis/envoy-types';
import { AggregatedDiscoveryServiceClient } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { DiscoveryRequest, type DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { createLogger, createMetricsRegistry } from '@trellis/runtime';
import { startEtcd, type TestEtcd } from '@trellis/testing';
import { createAgentMetrics, type AgentMetrics } from '../src/agent/metrics';
import { XdsRelay, type RelayLimits } from '../src/agent/xds-relay';
import { eventually, removeBundles, startDevControlPlane, type AppProcess } from './support/built-apps';

jest.setTimeout(300_000);

type Outcome = { ok: true; response: DiscoveryResponse } | { ok: false; code: number; details: string };

/** Every stream a test opened, cancelled after it. */
const opened: AdsStream[] = [];

/** An ADS stream as a client sees it: its answers and its end, in order. */
class AdsStream {
  readonly answers: DiscoveryResponse[] = [];
  ended: { code: number; details: string } | undefined;
  private readonly stream: ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;

  constructor(client: AggregatedDiscoveryServiceClient) {
    this.stream = client.streamAggregatedResources();
    opened.push(this);
    this.stream.on('data', (response: DiscoveryResponse) => this.answers.push(response));
    this.stream.on('error', (err: ServiceError) => (this.ended = { code: err.code, details: err.details }));
  }

  /** An Envoy-shaped request as service a. */
  ask(typeUrl: string, versionInfo = '', responseNonce = ''): this {
    this.stream.write(
      DiscoveryRequest.fromPartial({ node: { id: 'a-1', cluster: 'a', userAgentName: 'envoy' }, typeUrl, versionInfo, responseNonce }),
    );
    return this;
  }

  /** Its first answer, or how it ended. */
  outcome(): Promise<Outcome> {
    return eventually('an answer or an end', () => {
      if (this.answers[0]) return { ok: true, response: this.answers[0] } as Outcome;
      if (this.ended) return { ok: false, ...this.ended } as Outcome;
      return undefined;
    });
  }

  cancel(): void {
    this.stream.cancel();
  }
}

describe('the xDS relay holds local clients to its limits', () => {
  let etcd: TestEtcd;
  let controlPlane: AppProcess;
  let xdsAddress: string;
  let dir: string;
  const relays: XdsRelay[] = [];
  const clients: AggregatedDiscoveryServiceClient[] = [];
  const sockets: Socket[] = [];

  beforeAll(async () => {
    etcd = await startEtcd();
    dir = await mkdtemp(join(tmpdir(), 'relay-limits-'));
    const store = new MeshStore(etcd.client(), new KeyLayout(etcd.prefix));
    await store.createService({ name: 'a', team: 'shop', protocol: 'grpc', port: 50051 }, 'test');
    ({ process: controlPlane, xdsAddress } = await startDevControlPlane(etcd));
  });
  afterEach(async () => {
    for (const stream of opened.splice(0)) stream.cancel();
    for (const client of clients.splice(0)) client.close();
    for (const socket of sockets.splice(0)) socket.destroy();
    await Promise.all(relays.splice(0).map((relay) => relay.stop()));
  });
  afterAll(async () => {
    await controlPlane?.stop();
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    removeBundles();
  });

  let relayCount = 0;
  const startRelay = async (limits: Partial<RelayLimits>) => {
    const metrics = createAgentMetrics(createMetricsRegistry('agent'));
    const relay = new XdsRelay({
      service: 'a',
      listen: { kind: 'unix', path: join(dir, `relay-${relayCount++}.sock`) },
      upstream: xdsAddress,
      credentials: async () => credentials.createInsecure(),
      logger: createLogger('agent', 'silent'),
      metrics,
      limits,
    });
    await relay.start();
    relays.push(relay);
    return { relay, metrics };
  };
  /** A client with a connection of its own. */
  const connection = (relay: XdsRelay) => {
    const client = new AggregatedDiscoveryServiceClient(relay.target, credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
    });
    clients.push(client);
    return client;
  };
  const counted = async (counter: AgentMetrics['xdsRelayRefused'] | AgentMetrics['xdsRelayConnectionsRefused'], reason: string) =>
    (await counter.get()).values.find((v) => v.labels['reason'] === reason)?.value ?? 0;
  /** The Envoy-shaped stream is still served: a request for another type gets its answer. */
  const stillServed = async (envoy: AdsStream) => {
    const before = envoy.answers.length;
    const clusters = envoy.answers[0]!;
    envoy.ask(TypeUrl.Cluster, clusters.versionInfo, clusters.nonce).ask(TypeUrl.Listener);
    await eventually('a listener answer on the Envoy-shaped stream', () =>
      envoy.answers.slice(before).some((r) => r.typeUrl === TypeUrl.Listener),
    );
    expect(envoy.ended).toBeUndefined();
  };

  it('attack: more streams on one connection than allowed are refused RESOURCE_EXHAUSTED with the reason; an Envoy-shaped stream keeps working', async () => {
    const { relay, metrics } = await startRelay({ maxStreamsPerConnection: 3 });
    const envoy = new AdsStream(connection(relay)).ask(TypeUrl.Cluster);
    expect(await envoy.outcome()).toMatchObject({ ok: true, response: { typeUrl: TypeUrl.Cluster } });

    const abuser = connection(relay);
    const streams = Array.from({ length: 6 }, () => new AdsStream(abuser).ask(TypeUrl.Cluster));
    const outcomes = await Promise.all(streams.map((s) => s.outcome()));
    expect(outcomes.filter((o) => o.ok)).toHaveLength(3);
    const refused = outcomes.filter((o) => !o.ok);
    expect(refused).toHaveLength(3);
    for (const o of refused)
      expect(o).toEqual({ ok: false, code: status.RESOURCE_EXHAUSTED, details: 'too many xDS streams on one connection (at most 3)' });
    expect(await counted(metrics.xdsRelayRefused, 'too-many-streams-per-connection')).toBe(3);

    await stillServed(envoy);
    // A stream that ends frees its place on the connection.
    streams.find((s) => s.answers.length > 0)!.cancel();
    await eventually('a new stream on the abuser connection is served again', async () => {
      const next = new AdsStream(abuser).ask(TypeUrl.Cluster);
      const outcome = await next.outcome();
      if (!outcome.ok) return undefined;
      next.cancel();
      return true;
    });
  });

  it('attack: streams spread over many connections stop at the relay-wide cap, and so do the control-plane connections they cost', async () => {
    const { relay, metrics } = await startRelay({ maxStreams: 5, maxStreamsPerConnection: 2 });
    const envoy = new AdsStream(connection(relay)).ask(TypeUrl.Cluster);
    expect(await envoy.outcome()).toMatchObject({ ok: true });

    // 5 connections × 2 streams: only 4 more fit beside the Envoy-shaped one.
    const connections = Array.from({ length: 5 }, () => connection(relay));
    const outcomes: Outcome[] = [];
    for (const client of connections) {
      const pair = [new AdsStream(client).ask(TypeUrl.Cluster), new AdsStream(client).ask(TypeUrl.Cluster)];
      outcomes.push(...(await Promise.all(pair.map((s) => s.outcome()))));
    }
    expect(outcomes.filter((o) => o.ok)).toHaveLength(4);
    const refused = outcomes.filter((o) => !o.ok);
    expect(refused).toHaveLength(6);
    for (const o of refused)
      expect(o).toEqual({ ok: false, code: status.RESOURCE_EXHAUSTED, details: 'the xDS relay carries 5 streams already (at most 5)' });
    expect(await counted(metrics.xdsRelayRefused, 'too-many-streams')).toBe(6);
    // 5 streams at most 8 per upstream connection (the default): one connection to the control plane.
    expect((await metrics.xdsRelayUpstreams.get()).values[0]?.value).toBe(1);
    await stillServed(envoy);
  });

  it('attack: a stream that never sends a request is ended DEADLINE_EXCEEDED and frees its place', async () => {
    const { relay, metrics } = await startRelay({ maxStreamsPerConnection: 1, firstRequestTimeoutMs: 1_000 });
    const client = connection(relay);
    const silent = new AdsStream(client);
    expect(await silent.outcome()).toEqual({
      ok: false,
      code: status.DEADLINE_EXCEEDED,
      details: 'no request within 1000 ms of opening the stream',
    });
    expect(await counted(metrics.xdsRelayRefused, 'first-request-timeout')).toBe(1);
    // The one place on the connection is free again.
    expect(await new AdsStream(client).ask(TypeUrl.Cluster).outcome()).toMatchObject({ ok: true });
  });

  it('attack: a connection that never sends the HTTP/2 preface is closed', async () => {
    const { relay, metrics } = await startRelay({ prefaceTimeoutMs: 1_000 });
    const silent = netConnect(relay.target.slice('unix:'.length));
    sockets.push(silent);
    let closed = false;
    silent.once('close', () => (closed = true));
    silent.write('PRI * HTTP/2.0\r\n'); // a trickle, never the whole preface
    await eventually('the silent connection is closed', () => closed);
    expect(await counted(metrics.xdsRelayConnectionsRefused, 'preface_timeout')).toBe(1);
    // Connections that speak HTTP/2 are served as before.
    expect(await new AdsStream(connection(relay)).ask(TypeUrl.Cluster).outcome()).toMatchObject({ ok: true });
  });

  it('attack: connections past the cap are closed at accept, and one is served again once others close', async () => {
    const { relay, metrics } = await startRelay({ maxConnections: 2, prefaceTimeoutMs: 120_000 });
    const path = relay.target.slice('unix:'.length);
    /** A connection that sends nothing, and whether it has been closed. */
    const open = () => {
      const socket = netConnect(path);
      sockets.push(socket);
      const state = { socket, closed: false };
      socket.on('error', () => undefined);
      socket.once('close', () => (state.closed = true));
      return state;
    };
    const held = [open(), open()];
    const third = open();
    await eventually('the third connection is closed at accept', () => third.closed);
    expect(await counted(metrics.xdsRelayConnectionsRefused, 'too_many_connections')).toBe(1);
    expect(held.map((h) => h.closed)).toEqual([false, false]);
    for (const { socket } of held) socket.destroy();
    expect(await new AdsStream(connection(relay)).ask(TypeUrl.Cluster).outcome()).toMatchObject({ ok: true });
  });

  it('an HTTP/2 connection with no stream open is closed after the idle limit; one holding an ADS stream is kept', async () => {
    const { relay } = await startRelay({ maxConnectionIdleMs: 1_000 });
    const path = relay.target.slice('unix:'.length);
    const idle = http2Connect('http://localhost', { createConnection: () => netConnect(path) });
    idle.on('error', () => undefined);
    const seen = { goaway: false, closed: false };
    idle.once('goaway', () => (seen.goaway = true));
    idle.once('close', () => (seen.closed = true));
    await eventually('the idle connection gets GOAWAY and closes', () => seen.goaway && seen.closed);

    const envoy = new AdsStream(connection(relay)).ask(TypeUrl.Cluster);
    expect(await envoy.outcome()).toMatchObject({ ok: true });
    // Several idle limits later the stream's connection is still there and served.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    await stillServed(envoy);
  });
});
