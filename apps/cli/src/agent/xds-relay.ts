// The local xDS relay (what istio-agent does for proxyless gRPC): grpc-js-xds can
// only speak insecure channel credentials to its xDS server, so the app connects
// to this relay on loopback or a Unix socket, and the agent holds the mTLS
// connection to the control plane with the workload certificate. Each
// downstream ADS stream (SotW or Delta) gets one upstream stream; messages pass
// byte for byte in both directions. Upstream streams are spread over a pool of
// connections, at most `maxStreamsPerUpstream` on each, because the control
// plane caps streams per connection (TRELLIS_XDS_MAX_STREAMS_PER_CONNECTION): on
// one connection the 17th app process on a host would be refused. The relay reads one thing: the node in each
// request, which must name this agent's service — a local process cannot borrow
// the agent's certificate to get another service's configuration. Every relayed stream
// is a stream on the control plane, so what local clients may hold is capped (RelayLimits):
// streams in all and per connection, connections, and the time a connection or a stream may
// stay silent.
import { chmod, rm } from 'node:fs/promises';
import { createServer as createNetServer, isIP, type Server as NetServer, type Socket } from 'node:net';
import {
  Client,
  Metadata,
  Server,
  ServerCredentials,
  status,
  type ChannelCredentials,
  type ClientDuplexStream,
  type ServerDuplexStream,
  type ServiceDefinition,
  type ServiceError,
} from '@grpc/grpc-js';
import { DeltaDiscoveryRequest, DiscoveryRequest } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { XDS_MAX_MESSAGE_BYTES } from '@trellis/mesh-contracts';
import type { Logger } from '@trellis/runtime';
import { awaitHttp2Preface, grpcConnectionOptions, listenOnEveryAddress, stopGrpcServer, type HostResolver } from '@trellis/runtime/grpc';
import type { AgentMetrics } from './metrics';

const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
export const ADS_METHODS = {
  sotw: `${ADS}/StreamAggregatedResources`,
  delta: `${ADS}/DeltaAggregatedResources`,
} as const;
type Variant = keyof typeof ADS_METHODS;

const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const passThrough = (path: string) => ({
  path,
  requestStream: true,
  responseStream: true,
  requestSerialize: bytes.serialize,
  requestDeserialize: bytes.deserialize,
  responseSerialize: bytes.serialize,
  responseDeserialize: bytes.deserialize,
});
/** How long stop() lets open streams end (their apps are stopping too) before it cuts them. */
const STOP_GRACE_MS = 5_000;

const RELAY_SERVICE: ServiceDefinition = { sotw: passThrough(ADS_METHODS.sotw), delta: passThrough(ADS_METHODS.delta) };

/** Where the relay listens: a loopback host:port or `unix:/path`; anything else is refused. */
export type RelayAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export function parseRelayAddress(value: string): RelayAddress {
  if (value.startsWith('unix:')) {
    const path = value.slice('unix:'.length).replace(/^\/\//, '');
    if (!path.startsWith('/')) throw new Error(`"${value}" must be unix:/absolute/path`);
    return { kind: 'unix', path };
  }
  const match = /^(\[::1\]|127(?:\.\d{1,3}){3}|localhost):(\d{1,5})$/.exec(value);
  if (!match)
    throw new Error(`"${value}" must be a loopback address (127.0.0.1:PORT, [::1]:PORT) or unix:/path: the relay is for local apps only`);
  const port = Number(match[2]);
  if (port > 65535) throw new Error(`"${value}": port must be 0-65535`);
  return { kind: 'tcp', host: match[1]!, port };
}

export function relayTarget(address: RelayAddress): string {
  return address.kind === 'unix' ? `unix:${address.path}` : `${address.host}:${address.port}`;
}

/** Only a loopback peer is served on TCP (the listener is loopback already; this holds if it is ever not). */
export function isLocalPeer(peer: string): boolean {
  const host = peer.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === '::1' || /^127\./.test(host) || host === '::ffff:127.0.0.1' || host === 'localhost';
}

/** Why a request may not pass, or undefined. Each request carrying a node is checked, not only the first. */
export function refusal(variant: Variant, message: Buffer, service: string, first: boolean): string | undefined {
  let node: { cluster: string } | undefined;
  try {
    node = variant === 'sotw' ? DiscoveryRequest.decode(message).node : DeltaDiscoveryRequest.decode(message).node;
  } catch (err) {
    return `the request is not a valid ${variant === 'sotw' ? 'DiscoveryRequest' : 'DeltaDiscoveryRequest'}: ${(err as Error).message}`;
  }
  if (!node) return first ? 'the first request of a stream must carry the node' : undefined;
  if (node.cluster !== service) return `this relay serves service "${service}" only; node.cluster is ${JSON.stringify(node.cluster)}`;
  return undefined;
}

export interface XdsRelayOptions {
  service: string;
  listen: RelayAddress;
  /** The control plane's xDS address (host:port). */
  upstream: string;
  /** mTLS with the current workload certificate (read when a channel is made). */
  credentials: () => Promise<ChannelCredentials>;
  /** TLS name to expect when the address is not in the control plane's certificate. */
  serverName?: string;
  logger: Logger;
  metrics: AgentMetrics;
  /** Streams per upstream connection before another is opened (default 8: half the control plane's default cap, so
   * a stream that ended here but not yet there cannot tip a connection over it). */
  maxStreamsPerUpstream?: number;
  /** DEFAULT_RELAY_LIMITS where left out. */
  limits?: Partial<RelayLimits>;
  /** How `localhost` becomes the addresses listened on: every address dns.lookup gives where left out. */
  resolveHost?: HostResolver;
}

export const DEFAULT_MAX_STREAMS_PER_UPSTREAM = 8;

/**
 * What local clients may hold of the relay. Each relayed stream is one on the control plane, on a
 * connection the relay opens with the agent's certificate, so without a cap any process that can reach
 * the socket could open streams and control-plane connections without end.
 */
export interface RelayLimits {
  /** Streams the relay carries in all (so at most maxStreams / maxStreamsPerUpstream upstream connections); more are refused with RESOURCE_EXHAUSTED. */
  maxStreams: number;
  /** Streams one client connection may hold (Envoy and grpc-js-xds open one ADS stream per connection); more are refused with RESOURCE_EXHAUSTED. */
  maxStreamsPerConnection: number;
  /** Client connections open at once; a further one is closed at accept. */
  maxConnections: number;
  /** From accept to the client's HTTP/2 preface; a connection that has not sent it by then is closed. */
  prefaceTimeoutMs: number;
  /** From a stream's opening to its first request; then it is ended with DEADLINE_EXCEEDED. */
  firstRequestTimeoutMs: number;
  /** A client connection with no stream open for this long is closed (GOAWAY); an open ADS stream keeps it. 0: never. */
  maxConnectionIdleMs: number;
}

/**
 * A node's local apps are a handful of processes with one ADS stream each: 64 streams (8 control-plane
 * connections) is far above that. Per connection, the deadlines and the idle limit: the control plane's.
 */
export const DEFAULT_RELAY_LIMITS: RelayLimits = {
  maxStreams: 64,
  maxStreamsPerConnection: 16,
  maxConnections: 64,
  prefaceTimeoutMs: 10_000,
  firstRequestTimeoutMs: 10_000,
  maxConnectionIdleMs: 300_000,
};

/** Why the relay closed a client connection (a metric label). */
export type RelayConnectionRefusal = 'too_many_connections' | 'preface_timeout';

/** One upstream connection and the streams on it; it closes when its last stream ends. */
interface Upstream {
  client: Promise<Client>;
  streams: number;
  /** Takes no new streams: made with a replaced certificate, or its certificate could not be read. */
  retired: boolean;
}

export class XdsRelay {
  private server: Server | undefined;
  /** One listener per address the host resolves to (localhost: 127.0.0.1 and ::1), or the Unix socket's. */
  private listeners: NetServer[] = [];
  private readonly upstreams = new Set<Upstream>();
  private nextChannelId = 0;
  private boundTarget = '';
  private readonly limits: RelayLimits;
  /** Streams carried now, in all and per client connection (by peer). */
  private streams = 0;
  private readonly streamsPerConnection = new Map<string, number>();
  /** Client connections accepted and not yet through their HTTP/2 preface. */
  private readonly pending = new Set<Socket>();
  /** Client connections open, on all listeners (maxConnections holds for them together). */
  private connections = 0;
  private nextConnectionId = 0;

  constructor(private readonly options: XdsRelayOptions) {
    this.limits = { ...DEFAULT_RELAY_LIMITS, ...options.limits };
  }

  /** The address apps put in their bootstrap. */
  get target(): string {
    return this.boundTarget;
  }

  async start(): Promise<void> {
    const { limits } = this;
    const server = new Server({
      // A frozen client (a stopped process) is found by its unanswered pings and its connection closed.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      // HTTP/2's own ceiling, above the cap so that the excess is refused with a status rather than queued by the client.
      'grpc.max_concurrent_streams': limits.maxStreamsPerConnection + 4,
      // Responses pass as they came from the control plane, which sends up to XDS_MAX_MESSAGE_BYTES.
      'grpc.max_send_message_length': XDS_MAX_MESSAGE_BYTES,
      ...grpcConnectionOptions({ maxConnectionIdleMs: limits.maxConnectionIdleMs }),
    });
    server.addService(RELAY_SERVICE, {
      sotw: (call: ServerDuplexStream<Buffer, Buffer>) => this.relay('sotw', call),
      delta: (call: ServerDuplexStream<Buffer, Buffer>) => this.relay('delta', call),
    });
    // The relay accepts connections itself and hands each to grpc-js once it has sent its HTTP/2 preface:
    // grpc-js's own listener holds a connection that never speaks for ever, and caps none.
    const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
    const open = () => {
      const listener = createNetServer((socket) => this.accept(socket, (s) => injector.injectConnection(s)));
      this.listeners.push(listener);
      return listener;
    };
    const { listen } = this.options;
    let port = 0;
    if (listen.kind === 'unix') {
      await rm(listen.path, { force: true });
      await listenOn(open(), listen.path);
      // Only the agent's user (and its group: the app's, in a pod or a shared group on a VM) may connect.
      await chmod(listen.path, 0o660);
    } else {
      // Every address the host resolves to (localhost: 127.0.0.1 and ::1), as grpc-js bound them.
      port = await listenOnEveryAddress(listen.host, listen.port, open, {
        discard: (listener) => this.listeners.splice(this.listeners.indexOf(listener), 1),
        resolve: this.options.resolveHost,
      });
    }
    this.server = server;
    this.boundTarget = listen.kind === 'unix' ? relayTarget(listen) : `${listen.host}:${port}`;
    this.options.logger.info({ relay: this.boundTarget, upstream: this.options.upstream, limits }, 'xDS relay listening');
    if (!this.options.serverName && isIP(hostOf(this.options.upstream)) !== 0) {
      // grpc-js sends the IP as the TLS server name, which RFC 6066 forbids and Node warns about (DEP0123).
      // The certificate is still checked against the address; a name it holds is the proper fix.
      this.options.logger.warn(
        { upstream: this.options.upstream },
        "the control plane's address is an IP: give --xds-server-name (TRELLIS_XDS_SERVER_NAME), a name in its certificate, to send as the TLS server name",
      );
    }
  }

  /** A client connection: handed to grpc-js once it has sent its HTTP/2 preface, closed if it has not in time. */
  private accept(socket: Socket, inject: (socket: Socket) => void): void {
    if (this.connections >= this.limits.maxConnections) {
      this.refuseConnection('too_many_connections');
      socket.destroy();
      return;
    }
    this.connections++;
    // Its place is free once the client's end is read (this side then closes too) or the connection closes.
    let counted = true;
    const free = () => {
      if (counted) this.connections--;
      counted = false;
    };
    socket.once('end', free);
    socket.once('close', free);
    // grpc-js names a Unix-socket peer "unknown", the same for every connection; streams are counted per
    // connection by peer, so each gets a name of its own (`unix:<n>`).
    if (this.options.listen.kind === 'unix')
      Object.defineProperties(socket, { remoteAddress: { value: 'unix' }, remotePort: { value: this.nextConnectionId++ } });
    this.pending.add(socket);
    const deadline = setTimeout(() => {
      this.refuseConnection('preface_timeout');
      socket.destroy();
    }, this.limits.prefaceTimeoutMs);
    const settle = () => {
      clearTimeout(deadline);
      this.pending.delete(socket);
    };
    socket.once('close', settle);
    // Errors before the handoff are this listener's to swallow (the connection just closes); HTTP/2 handles later ones.
    socket.on('error', () => undefined);
    awaitHttp2Preface(socket, () => {
      settle();
      socket.off('close', settle);
      inject(socket);
    });
  }

  private refuseConnection(reason: RelayConnectionRefusal): void {
    this.options.metrics.xdsRelayConnectionsRefused.inc({ reason });
    this.options.logger.warn({ reason }, 'xDS relay closed a client connection');
  }

  /** New streams use a channel with the current certificate; open ones keep theirs until they end. */
  renewCredentials(): void {
    for (const u of this.upstreams) u.retired = true;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const listener of this.listeners.splice(0)) listener.close();
    for (const socket of this.pending) socket.destroy();
    if (server) await stopGrpcServer(server, STOP_GRACE_MS);
    for (const u of [...this.upstreams]) this.close(u);
  }

  /** A place for one more stream: a live connection below the limit, or a new one. Counted at once, so a burst of
   * streams opening together fills connections in turn instead of all picking the same one. */
  private acquire(): Upstream {
    const limit = this.options.maxStreamsPerUpstream ?? DEFAULT_MAX_STREAMS_PER_UPSTREAM;
    let upstream = [...this.upstreams].find((u) => !u.retired && u.streams < limit);
    if (!upstream) {
      const created: Upstream = {
        client: this.options.credentials().then(
          (creds) =>
            new Client(this.options.upstream, creds, {
              ...(this.options.serverName ? { 'grpc.ssl_target_name_override': this.options.serverName } : {}),
              // The control plane answers a ping only between its turns: a busy one (a first push on a loaded host) must
              // not make every agent reconnect at once, so the answer may take a minute (the control plane's own, too).
              'grpc.keepalive_time_ms': 30_000,
              'grpc.keepalive_timeout_ms': 60_000,
              // The control plane sends responses up to this size; grpc-js would refuse those above 4 MiB.
              'grpc.max_receive_message_length': XDS_MAX_MESSAGE_BYTES,
              // grpc-js shares one subchannel (one HTTP/2 connection) among channels with equal options and target;
              // a local pool and a distinct option give each channel its own connection.
              'grpc.use_local_subchannel_pool': 1,
              'trellis.relay_channel': this.nextChannelId++,
            }),
        ),
        streams: 0,
        retired: false,
      };
      // A failure to read the certificate fails the streams waiting on it; the next stream tries a new connection.
      created.client.catch(() => (created.retired = true));
      this.upstreams.add(created);
      this.options.metrics.xdsRelayUpstreams.set(this.upstreams.size);
      upstream = created;
    }
    upstream.streams++;
    return upstream;
  }

  private release(upstream: Upstream): void {
    upstream.streams--;
    if (upstream.streams === 0) this.close(upstream);
  }

  private close(upstream: Upstream): void {
    if (!this.upstreams.delete(upstream)) return;
    this.options.metrics.xdsRelayUpstreams.set(this.upstreams.size);
    upstream.client.then(
      (c) => c.close(),
      () => undefined,
    );
  }

  private relay(variant: Variant, down: ServerDuplexStream<Buffer, Buffer>): void {
    const { metrics, logger, service } = this.options;
    const refuse = (code: status, reason: string, details: string) => {
      metrics.xdsRelayRefused.inc({ reason });
      logger.warn({ peer: down.getPeer(), variant, reason, details }, 'xDS relay refused a stream');
      down.emit('error', { code, details } as Partial<ServiceError>);
    };
    // On a Unix socket every peer is local (grpc-js reports it as "unknown"); on TCP the peer must be loopback.
    const peer = down.getPeer();
    if (this.options.listen.kind === 'tcp' && !isLocalPeer(peer))
      return refuse(status.PERMISSION_DENIED, 'not-local', 'the xDS relay serves local clients only');
    const { maxStreams, maxStreamsPerConnection, firstRequestTimeoutMs } = this.limits;
    if (this.streams >= maxStreams)
      return refuse(
        status.RESOURCE_EXHAUSTED,
        'too-many-streams',
        `the xDS relay carries ${maxStreams} streams already (at most ${maxStreams})`,
      );
    const onConnection = this.streamsPerConnection.get(peer) ?? 0;
    if (onConnection >= maxStreamsPerConnection)
      return refuse(
        status.RESOURCE_EXHAUSTED,
        'too-many-streams-per-connection',
        `too many xDS streams on one connection (at most ${maxStreamsPerConnection})`,
      );
    this.streams++;
    this.streamsPerConnection.set(peer, onConnection + 1);

    let up: ClientDuplexStream<Buffer, Buffer> | undefined;
    let upstream: Upstream | undefined;
    let finished = false;
    const pending: Buffer[] = [];
    let downEnded = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(firstRequestTimer);
      this.streams--;
      const left = (this.streamsPerConnection.get(peer) ?? 1) - 1;
      if (left > 0) this.streamsPerConnection.set(peer, left);
      else this.streamsPerConnection.delete(peer);
      metrics.xdsRelayStreams.dec({ variant });
      if (upstream) this.release(upstream);
    };
    metrics.xdsRelayStreams.inc({ variant });
    // A silent stream holds a place under both caps: it gets the control plane's deadline for a first request.
    const firstRequestTimer = setTimeout(() => {
      finish();
      refuse(status.DEADLINE_EXCEEDED, 'first-request-timeout', `no request within ${firstRequestTimeoutMs} ms of opening the stream`);
    }, firstRequestTimeoutMs);

    let first = true;
    down.on('data', (message: Buffer) => {
      clearTimeout(firstRequestTimer);
      const why = refusal(variant, message, service, first);
      first = false;
      if (why) {
        up?.cancel();
        finish();
        return refuse(status.PERMISSION_DENIED, 'node', why);
      }
      if (up) {
        if (!up.write(message)) {
          down.pause();
          up.once('drain', () => down.resume());
        }
        return;
      }
      pending.push(message);
      if (pending.length > 1) return; // the upstream stream is being opened
      down.pause();
      upstream = this.acquire();
      upstream.client.then(
        (client) => {
          if (finished) return;
          up = client.makeBidiStreamRequest(ADS_METHODS[variant], bytes.serialize, bytes.deserialize, new Metadata());
          this.pipeUpstream(variant, up, down, finish, upstream!);
          for (const m of pending.splice(0)) up.write(m);
          if (downEnded) up.end();
          down.resume();
        },
        (err: Error) => {
          finish();
          refuse(status.UNAVAILABLE, 'no-certificate', `the agent has no usable workload certificate: ${err.message}`);
        },
      );
    });
    down.on('end', () => {
      downEnded = true;
      up?.end();
    });
    down.on('cancelled', () => {
      up?.cancel();
      finish();
    });
    down.on('error', () => {
      up?.cancel();
      finish();
    });
  }

  /** Responses and the final status, from the control plane to the app. */
  private pipeUpstream(
    variant: Variant,
    up: ClientDuplexStream<Buffer, Buffer>,
    down: ServerDuplexStream<Buffer, Buffer>,
    finish: () => void,
    upstream: Upstream,
  ): void {
    up.on('data', (message: Buffer) => {
      if (!down.write(message)) {
        up.pause();
        down.once('drain', () => up.resume());
      }
    });
    up.on('error', (err: ServiceError) => {
      // The control plane's cap on streams per connection (TRELLIS_XDS_MAX_STREAMS_PER_CONNECTION) is below what
      // this relay puts on one: the connection takes no new streams, so the app's retry opens another.
      if (err.code === status.RESOURCE_EXHAUSTED) upstream.retired = true;
      finish();
      if (err.code !== status.CANCELLED)
        this.options.logger.info({ variant, code: err.code, details: err.details }, 'the control plane ended an xDS stream');
      // The app sees the control plane's own status (UNAUTHENTICATED, UNAVAILABLE…) and reconnects.
      down.emit('error', { code: err.code, details: err.details, metadata: new Metadata() } as Partial<ServiceError>);
    });
    up.on('status', (s: { code: status }) => {
      if (s.code !== status.OK) return;
      finish();
      down.end();
    });
  }
}

function listenOn(listener: NetServer, path: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(path, () => {
      listener.off('error', reject);
      resolve();
    });
  });
}

/** The host of a host:port address, without an IPv6 literal's brackets. */
function hostOf(address: string): string {
  return address.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
}
