// The Aggregated Discovery Service on @grpc/grpc-js: stream setup (first request,
// node identity, credentials), then a protocol session per stream fed by the
// snapshot cache. Protocol rules live in the sessions, not here.
import { status as GrpcStatus, type Metadata, type ServerDuplexStream } from '@grpc/grpc-js';
import type { Node } from '@trellis/envoy-types/envoy/config/core/v3/base';
import type {
  DeltaDiscoveryRequest,
  DeltaDiscoveryResponse,
  DiscoveryRequest,
  DiscoveryResponse,
} from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import type { AggregatedDiscoveryServiceServer } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { REQUEST_ID_HEADER, type Logger } from '@trellis/runtime';
import { OUTBOUND_PORT_METADATA } from '../envoy/names';
import { proxyKindOf, type ProxyIdentity } from '../resource';
import type { StreamInfo, StreamRejection, XdsCallbacks, XdsProtocol } from './callbacks';
import { ConnectionAges, http2SessionOf, MAX_AGE_REASON, type ConnectionAgeLimits } from './connection-age';
import { DeltaSession } from './delta-session';
import type { SnapshotSource } from './snapshot-cache';
import { SotwSession } from './sotw-session';
import type { StreamAuthenticator } from './stream-auth';
import { StreamLog } from './stream-log';

const REJECTION_CODES = new Map<GrpcStatus, StreamRejection>([
  [GrpcStatus.INVALID_ARGUMENT, 'invalid_argument'],
  [GrpcStatus.UNAUTHENTICATED, 'unauthenticated'],
  [GrpcStatus.RESOURCE_EXHAUSTED, 'resource_exhausted'],
  [GrpcStatus.DEADLINE_EXCEEDED, 'deadline_exceeded'],
  [GrpcStatus.INTERNAL, 'internal'],
]);

const SERVICE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export interface AdsServerOptions {
  cache: SnapshotSource;
  callbacks: Required<XdsCallbacks>;
  authenticate: StreamAuthenticator;
  controlPlaneId: string;
  /** Streams one connection (one peer address) may hold open, set up or not; the next is refused. */
  maxStreamsPerConnection: number;
  /** A stream that sends no first request within this is ended (a silent stream holds a slot for nothing). */
  firstRequestTimeoutMs: number;
  /** Ends each connection's ADS streams with UNAVAILABLE at its age (connection-age.ts); absent: no age here. */
  connectionAge?: ConnectionAgeLimits;
  /** A connection reached its age; `streams` ADS streams were ended on it (a metric). */
  onConnectionAged?: (streams: number) => void;
  logger: Logger;
}

/** A live stream, as the debug endpoints and shutdown see it. */
export interface ActiveStream {
  info: StreamInfo;
  close(): void;
}

export class AdsServer {
  private nextStreamId = 1;
  private readonly active = new Map<number, ActiveStream>();
  /** Open streams per connection (peer address), counted from the moment they open. */
  private readonly perConnection = new Map<string, number>();
  private readonly unknownTypesLogged = new Set<string>();
  private readonly ages: ConnectionAges | undefined;
  /** Streams opened and closed, one by one while few, counted in a storm (stream-log.ts). */
  private readonly streamLog: StreamLog;

  constructor(private readonly options: AdsServerOptions) {
    this.streamLog = new StreamLog(options.logger);
    this.ages =
      options.connectionAge &&
      new ConnectionAges(options.connectionAge, (streams) => {
        options.onConnectionAged?.(streams);
        options.logger.info({ streams }, 'xds connection reached its max age: GOAWAY sent, its streams ended UNAVAILABLE');
      });
  }

  /** The grpc-js service implementation to add to a `grpc.Server`. */
  implementation(): AggregatedDiscoveryServiceServer {
    return {
      streamAggregatedResources: (call) => this.serve('sotw', call),
      deltaAggregatedResources: (call) => this.serve('delta', call),
    };
  }

  streams(): ActiveStream[] {
    return [...this.active.values()];
  }

  /** Ends every stream with UNAVAILABLE so proxies reconnect to another replica. */
  closeAll(): void {
    for (const stream of this.active.values()) stream.close();
    this.streamLog.flush();
  }

  private serve(protocol: 'sotw', call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>): void;
  private serve(protocol: 'delta', call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>): void;
  private serve(
    protocol: XdsProtocol,
    call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse> | ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>,
  ): void {
    const { cache, callbacks, logger } = this.options;
    const streamId = this.nextStreamId++;
    let session: SotwSession | DeltaSession | undefined;
    let info: StreamInfo | undefined;
    let cancelWatch: (() => void) | undefined;
    let starting = false;
    const queued: (DiscoveryRequest | DeltaDiscoveryRequest)[] = [];
    let finished = false;

    // Every stream counts against its connection from the start: silent ones are the attack.
    const peer = call.getPeer();
    const open = this.perConnection.get(peer) ?? 0;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      clearTimeout(firstRequestTimer);
      untrackAge?.();
      const left = (this.perConnection.get(peer) ?? 1) - 1;
      if (left > 0) this.perConnection.set(peer, left);
      else this.perConnection.delete(peer);
    };
    this.perConnection.set(peer, open + 1);
    const firstRequestTimer = setTimeout(
      () => fail(GrpcStatus.DEADLINE_EXCEEDED, `no request within ${this.options.firstRequestTimeoutMs} ms of opening the stream`),
      this.options.firstRequestTimeoutMs,
    );
    firstRequestTimer.unref();

    const fail = (code: GrpcStatus, reason: string): void => {
      if (finished) return;
      finished = true;
      const rejected = REJECTION_CODES.get(code);
      if (rejected) callbacks.onStreamRejected(rejected, reason);
      logger.warn({ streamId, protocol, code: GrpcStatus[code], reason, peer: call.getPeer() }, 'xds stream refused');
      call.emit('error', { code, details: reason });
      release();
    };

    // Not a refusal: the proxy reconnects (perhaps to another replica) and keeps its config meanwhile.
    const endUnavailable = (reason: string): void => {
      if (finished) return;
      call.emit('error', { code: GrpcStatus.UNAVAILABLE, details: reason });
      cleanup();
    };
    const connection = this.ages && http2SessionOf(call as ServerDuplexStream<unknown, unknown>);
    const untrackAge = connection && this.ages!.track(connection, () => endUnavailable(MAX_AGE_REASON));

    const cleanup = (): void => {
      release();
      if (finished && !info) return;
      finished = true;
      cancelWatch?.();
      session?.close();
      if (info) {
        this.active.delete(streamId);
        callbacks.onStreamClosed(info);
        const closed = info;
        this.streamLog.closed(() => ({ streamId, requestId: requestIdOf(call), nodeId: closed.nodeId, service: closed.identity.service }));
        info = undefined;
      }
    };

    const start = async (first: DiscoveryRequest | DeltaDiscoveryRequest): Promise<void> => {
      const identity = identityOf(first.node);
      if (typeof identity === 'string') return fail(GrpcStatus.INVALID_ARGUMENT, identity);
      const auth = await this.options.authenticate(call.metadata, identity.service, call.getAuthContext().sslPeerCertificate);
      if (!auth.admitted) return fail(GrpcStatus.UNAUTHENTICATED, auth.reason);
      if (finished) return;
      info = { streamId, nodeId: first.node!.id, identity, protocol, connectedAt: new Date() };
      const send = (response: DiscoveryResponse | DeltaDiscoveryResponse): boolean =>
        (call as ServerDuplexStream<unknown, unknown>).write(response);
      const gate = cache.afterFanOut && ((run: () => void) => cache.afterFanOut!(run));
      session =
        protocol === 'sotw'
          ? new SotwSession(info, send, callbacks, this.options.controlPlaneId, auth.authenticated, gate)
          : new DeltaSession(info, send, callbacks, this.options.controlPlaneId, auth.authenticated, gate);
      const activeInfo = info;
      this.active.set(streamId, {
        info: activeInfo,
        close: () => endUnavailable('control plane shutting down'),
      });
      callbacks.onStreamOpen(activeInfo);
      this.streamLog.opened(() => ({
        streamId,
        requestId: requestIdOf(call),
        protocol,
        nodeId: activeInfo.nodeId,
        service: identity.service,
        kind: identity.kind,
        auth: auth.method,
      }));
      const watch = cache.watch(identity, (snapshot) => session!.setSnapshot(snapshot));
      cancelWatch = watch.cancel;
      if (watch.snapshot) session.setSnapshot(watch.snapshot);
      for (const request of queued.splice(0)) this.handle(session, request);
    };

    call.on('data', (request: DiscoveryRequest | DeltaDiscoveryRequest) => {
      if (finished) return;
      clearTimeout(firstRequestTimer);
      if (session) return this.handle(session, request);
      queued.push(request);
      if (queued.length > 64) return fail(GrpcStatus.RESOURCE_EXHAUSTED, 'too many requests before the stream was set up');
      if (starting) return;
      starting = true;
      start(request).catch((err: unknown) => {
        logger.error({ err, streamId }, 'xds stream setup failed');
        fail(GrpcStatus.INTERNAL, 'stream setup failed');
      });
    });
    call.on('drain', () => session?.drained());
    call.on('end', () => {
      cleanup();
      if (!call.writableEnded) call.end();
    });
    call.on('cancelled', cleanup);
    call.on('close', cleanup);
    call.on('error', (err: Error) => {
      logger.debug({ err, streamId }, 'xds stream error');
      cleanup();
    });
    if (open >= this.options.maxStreamsPerConnection)
      fail(GrpcStatus.RESOURCE_EXHAUSTED, `too many xDS streams on one connection (at most ${this.options.maxStreamsPerConnection})`);
  }

  private handle(session: SotwSession | DeltaSession, request: DiscoveryRequest | DeltaDiscoveryRequest): void {
    const known =
      session instanceof SotwSession
        ? session.handleRequest(request as DiscoveryRequest)
        : session.handleRequest(request as DeltaDiscoveryRequest);
    if (!known && !this.unknownTypesLogged.has(request.typeUrl) && this.unknownTypesLogged.size < 32) {
      // Envoy asks only for types its bootstrap configures; an unknown one is a bootstrap mistake worth surfacing (once).
      this.unknownTypesLogged.add(request.typeUrl);
      this.options.logger.warn({ typeUrl: request.typeUrl }, 'xds request for a type this control plane does not serve; ignored');
    }
  }
}

/** The call's request id (requestIdInterceptor sets it in the metadata), to find the stream's other lines. */
function requestIdOf(call: { metadata: Metadata }): string | undefined {
  return call.metadata.get(REQUEST_ID_HEADER)[0]?.toString();
}

/** The proxy identity from a stream's first request, or why it cannot be used. */
export function identityOf(node: Node | undefined): ProxyIdentity | string {
  if (!node) return 'the first request on a stream must carry node';
  if (!node.id) return 'node.id is required (a unique instance id)';
  // It is stored and shown (registry UI, `trellis proxy-status` in a terminal): no line breaks or escape sequences.
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\x00-\x1f\x7f]/.test(node.id)) return 'node.id must not contain control characters (line breaks, escapes)';
  if (!SERVICE_NAME.test(node.cluster))
    return `node.cluster must be the proxy's service name (a DNS label), got ${JSON.stringify(node.cluster)}`;
  const kind = proxyKindOf(node.userAgentName);
  const outboundPort: unknown = node.metadata?.[OUTBOUND_PORT_METADATA];
  if (outboundPort === undefined || kind !== 'envoy') return { service: node.cluster, kind };
  if (typeof outboundPort !== 'number' || !Number.isInteger(outboundPort) || outboundPort < 1 || outboundPort > 65535)
    return `node.metadata["${OUTBOUND_PORT_METADATA}"] must be a port number (1-65535), got ${JSON.stringify(outboundPort)}`;
  return { service: node.cluster, kind, outboundPort };
}
