// The stream side of the start-up rehearsal (change-rehearsal.ts). A proxy's first responses, its ACKs, the EDS and
// RDS requests that follow them and the change-only pushes run the ADS sessions' code and the wire encoder, which
// V8 otherwise compiles during the first connection storm and the first change. Here real SotW and Delta sessions
// run against the rehearsal's own cache, each with a client in this process that answers as an Envoy sidecar does:
// no socket, no grpc-js stream, no AdsServer (so no connection count, stream log, proxy status or debug listing),
// and callbacks that only feed the client (no metric, no log). Requests travel as bytes through the same decoders a
// real stream's do, responses through the same encoders. Nothing here is reachable from outside the process.
import { TypeUrl } from '@trellis/envoy-types';
import { Node } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { DeltaDiscoveryRequest, DiscoveryRequest } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { endpointsNameOf, type ProxyIdentity, type XdsResource } from './resource';
import { AdsServiceDefinition, DeltaSession, SotwSession, type ProxySnapshot, type SentResponse, type XdsCallbacks } from './xds';

/** What a rehearsal stream needs of its cache: where answers wait during a fan-out, as the served streams'. */
export interface RehearsalGate {
  afterFanOut?(run: () => void): void;
}

/** The types an Envoy sidecar asks for next, by the type whose response names them. */
const FOLLOWS = new Map<string, string>([
  [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment],
  [TypeUrl.Listener, TypeUrl.RouteConfiguration],
]);

/** One in this many rehearsal streams speaks Delta (the rest SotW, as Envoy sidecars mostly do). */
const DELTA_EVERY = 8;
/** Turns a rehearsal step waits at most for its streams to go quiet (a session waiting on a timer is not waited for). */
const MAX_SETTLE_TURNS = 64;

const SOTW_ENCODE = AdsServiceDefinition.streamAggregatedResources.responseSerialize;
const DELTA_ENCODE = AdsServiceDefinition.deltaAggregatedResources.responseSerialize;
const SOTW_DECODE = AdsServiceDefinition.streamAggregatedResources.requestDeserialize;
const DELTA_DECODE = AdsServiceDefinition.deltaAggregatedResources.requestDeserialize;

const noop = (): void => undefined;

/** A rehearsal stream: the session's side and the client's, joined by a queue of request bytes. */
interface RehearsalStream {
  readonly session: SotwSession | DeltaSession;
  /** The client's first requests, as a connecting sidecar writes them. */
  start(): void;
  /** The client's answer to one response the session sent. */
  answer(sent: SentResponse): void;
  /** Hands a request the client wrote to its session (decoded as a real stream's is). */
  deliver(bytes: Buffer): void;
}

/**
 * The rehearsal's streams, one per identity it watches. Requests the clients write are delivered on a later turn,
 * as a network would; `settle` waits for the exchanges a step set off to finish.
 */
export class RehearsalStreams {
  private readonly queued: Array<{ stream: RehearsalStream; bytes: Buffer }> = [];
  private readonly streams: RehearsalStream[] = [];
  private flushing: NodeJS.Immediate | undefined;
  /** Messages either way since the last look (settle): not quiet yet. */
  private traffic = 0;
  /** Responses the sessions sent, by type URL (what the rehearsal exercised; its log line and tests read it). */
  readonly responses = new Map<string, number>();
  private closed = false;

  constructor(
    private readonly controlPlaneId: string,
    private readonly gate: RehearsalGate,
  ) {}

  /** A stream for `identity`, its first requests written; the returned function hands it the identity's snapshots. */
  open(identity: ProxyIdentity): (snapshot: ProxySnapshot) => void {
    const index = this.streams.length;
    const delta = index % DELTA_EVERY === DELTA_EVERY - 1;
    const node = Node.fromPartial({ id: `trellis-rehearsal-${index}`, cluster: identity.service, userAgentName: identity.kind });
    const info = {
      // Negative: never one of the server's stream ids.
      streamId: -1 - index,
      nodeId: node.id,
      identity,
      protocol: delta ? ('delta' as const) : ('sotw' as const),
      connectedAt: new Date(),
    };
    const gate = this.gate.afterFanOut && ((run: () => void) => this.gate.afterFanOut!(run));
    // The session's callbacks and the client's writes name the stream they make up (called only once it is made).
    const callbacks: Required<XdsCallbacks> = {
      onStreamOpen: noop,
      onStreamClosed: noop,
      onStreamRejected: noop,
      onResponse: (_info, sent) => {
        this.responses.set(sent.typeUrl, (this.responses.get(sent.typeUrl) ?? 0) + 1);
        stream.answer(sent);
      },
      onAck: noop,
      onNack: noop,
      onStaleRequest: noop,
    };
    const write = (bytes: Uint8Array): void => this.write(stream, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    const stream: RehearsalStream = delta
      ? deltaClient(new DeltaSession(info, encodeWith(DELTA_ENCODE), callbacks, this.controlPlaneId, false, gate), node, write)
      : sotwClient(new SotwSession(info, encodeWith(SOTW_ENCODE), callbacks, this.controlPlaneId, false, gate), node, write);
    this.streams.push(stream);
    stream.start();
    return (snapshot) => {
      if (!this.closed) stream.session.setSnapshot(snapshot);
    };
  }

  /** Waits (turn by turn, at most MAX_SETTLE_TURNS) until a whole turn passed with no message either way. */
  async settle(): Promise<void> {
    for (let turn = 0; turn < MAX_SETTLE_TURNS && !this.closed; turn++) {
      this.traffic = 0;
      await new Promise((resolve) => setImmediate(resolve));
      if (this.traffic === 0 && this.queued.length === 0) return;
    }
  }

  /** Ends every session (their timers too) and drops what was not delivered. */
  close(): void {
    this.closed = true;
    if (this.flushing) clearImmediate(this.flushing);
    this.queued.length = 0;
    for (const stream of this.streams) stream.session.close();
  }

  private write(stream: RehearsalStream, bytes: Buffer): void {
    if (this.closed) return;
    this.traffic++;
    this.queued.push({ stream, bytes });
    this.flushing ??= setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.flushing = undefined;
    for (const { stream, bytes } of this.queued.splice(0)) {
      if (this.closed) return;
      this.traffic++;
      stream.deliver(bytes);
    }
  };
}

/** A session's `send`: the bytes grpc-js would be handed, made and dropped; the transport always has room. */
function encodeWith<R>(encode: (response: R) => Buffer): (response: R) => boolean {
  return (response) => {
    encode(response);
    return true;
  };
}

/** A SotW sidecar: CDS and LDS (wildcard), every response ACKed, then EDS for its clusters (again after each CDS) and RDS for its listeners. */
function sotwClient(session: SotwSession, node: Node, write: (bytes: Uint8Array) => void): RehearsalStream {
  const subscribed = new Map<string, string[]>();
  const held = new Map<string, { version: string; nonce: string }>();
  const request = (typeUrl: string, names: string[], withNode = false): void => {
    const last = held.get(typeUrl);
    write(
      DiscoveryRequest.encode(
        DiscoveryRequest.fromPartial({
          node: withNode ? node : undefined,
          typeUrl,
          resourceNames: names,
          versionInfo: last?.version ?? '',
          responseNonce: last?.nonce ?? '',
        }),
      ).finish(),
    );
  };
  return {
    session,
    start: () => {
      subscribed.set(TypeUrl.Cluster, []).set(TypeUrl.Listener, []);
      request(TypeUrl.Cluster, [], true);
      request(TypeUrl.Listener, []);
    },
    deliver: (bytes) => void session.handleRequest(SOTW_DECODE(bytes)),
    answer: (sent) => {
      held.set(sent.typeUrl, { version: sent.version, nonce: sent.nonce });
      request(sent.typeUrl, subscribed.get(sent.typeUrl) ?? []);
      const follow = FOLLOWS.get(sent.typeUrl);
      if (!follow) return;
      const names = followNames(sent.typeUrl, sent.sent);
      const before = subscribed.get(follow);
      const same = before !== undefined && before.length === names.length && before.every((name, i) => name === names[i]);
      // Envoy re-creates changed clusters and asks for their endpoints again, even when the names are the same.
      if (same && follow !== TypeUrl.ClusterLoadAssignment) return;
      subscribed.set(follow, names);
      request(follow, names);
    },
  };
}

/** A Delta sidecar: CDS and LDS (wildcard), every response ACKed, then the endpoints and routes of new clusters and listeners. */
function deltaClient(session: DeltaSession, node: Node, write: (bytes: Uint8Array) => void): RehearsalStream {
  const subscribed = new Map<string, Set<string>>();
  const request = (fields: Partial<DeltaDiscoveryRequest>): void =>
    write(DeltaDiscoveryRequest.encode(DeltaDiscoveryRequest.fromPartial(fields)).finish());
  return {
    session,
    start: () => {
      request({ node, typeUrl: TypeUrl.Cluster });
      request({ typeUrl: TypeUrl.Listener });
    },
    deliver: (bytes) => void session.handleRequest(DELTA_DECODE(bytes)),
    answer: (sent) => {
      request({ typeUrl: sent.typeUrl, responseNonce: sent.nonce });
      const follow = FOLLOWS.get(sent.typeUrl);
      if (!follow) return;
      let names = subscribed.get(follow);
      const first = !names;
      if (!names) subscribed.set(follow, (names = new Set()));
      const added = followNames(sent.typeUrl, sent.sent).filter((name) => !names.has(name));
      for (const name of added) names.add(name);
      if (first || added.length > 0) request({ typeUrl: follow, resourceNamesSubscribe: added });
    },
  };
}

/** The names a sidecar asks for after a CDS or LDS response: its EDS clusters' endpoints, its listeners' routes (named after them). */
function followNames(typeUrl: string, resources: readonly XdsResource[]): string[] {
  if (typeUrl !== TypeUrl.Cluster) return resources.map((r) => r.name);
  const names: string[] = [];
  for (const cluster of resources) {
    const name = endpointsNameOf(cluster);
    if (name !== undefined) names.push(name);
  }
  return names;
}
