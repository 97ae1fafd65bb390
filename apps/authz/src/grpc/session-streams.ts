// node:http2 keeps each session's open streams in a Map (`session[kState].streams`, id → stream).
// When V8 rebuilds a Map's hash table (every few dozen streams on a busy connection: deleted
// entries fill it up), the old table keeps a link to the new one and keeps the entries it held.
// Once a session's table is in the old generation — every mark-compact promotes the live table,
// as it promotes every live young object — each table it rebuilds is allocated there too, and
// each replaced table is old garbage that still points at the streams in flight when it was
// replaced. Scavenges treat those pointers as roots, so from the first mark-compact under load
// until the connection ends nearly every call's http2 and grpc-js objects survive until they are
// promoted: scavenges copy twice as much, and the promoted garbage brings a mark-compact every
// ~0.7 s at full load (an Envoy's connection to authz lives for minutes). Streams kept by id in
// a plain dictionary object have no such links: its replaced backing stores are not referenced.
// The commit that added this file has the measurements (promoted bytes, mark-compacts per run).
import type { Http2Session } from 'node:http2';
import type { Logger } from '@trellis/runtime';

/** What node:http2 does with a session's streams registry: get, set, delete, size, forEach (lib/internal/http2/core.js). */
export class StreamsById<S> {
  private byId: Record<number, S> = Object.create(null) as Record<number, S>;
  private count = 0;
  /** Called each time the last open stream leaves (idle-limit.ts starts the connection's idle clock there). */
  onEmpty: (() => void) | undefined = undefined;

  get size(): number {
    return this.count;
  }

  get(id: number): S | undefined {
    return this.byId[id];
  }

  set(id: number, stream: S): this {
    if (this.byId[id] === undefined) this.count += 1;
    this.byId[id] = stream;
    return this;
  }

  delete(id: number): boolean {
    if (this.byId[id] === undefined) return false;
    delete this.byId[id];
    this.count -= 1;
    if (this.count === 0) this.onEmpty?.();
    return true;
  }

  /** As Map's: a stream deleted by an earlier callback (a destroy closing another) is not visited. */
  forEach(visit: (stream: S, id: number, registry: this) => void): void {
    for (const [key, stream] of Object.entries(this.byId)) {
      const id = Number(key);
      if (this.byId[id] === stream) visit(stream, id, this);
    }
  }
}

/**
 * Gives `session` a StreamsById in place of node:http2's Map, with the streams it holds now, and
 * returns it. Undefined, and nothing changed, where the session's state is not laid out as in Node 20
 * (session-streams.test.ts fails first on a Node that changed it).
 */
export function keepStreamsById(session: Http2Session): StreamsById<unknown> | undefined {
  const state = sessionState(session);
  const streams = state?.streams;
  if (!state || Object.prototype.toString.call(streams) !== '[object Map]') return undefined;
  const byId = new StreamsById<unknown>();
  (streams as Map<number, unknown>).forEach((stream, id) => byId.set(id, stream));
  state.streams = byId;
  return byId;
}

/** Where a connection's streams are kept from its first Check on: swapped (by_id), or left in node:http2's Map. */
export type StreamsKeptIn = 'by_id' | 'node_map';

let layoutWarned = false;

/**
 * keepStreamsById for a connection's first Check, reporting where its streams are kept (a metric). Where Node lays
 * the session out otherwise (another Node major in the image), authz still serves, with the GC cost this file
 * describes: said once per process (per isolate: a restarted Check worker says it again), naming the Node version,
 * so that it is seen and session-streams.ts updated.
 */
export function keepStreamsByIdReporting(
  logger: Logger,
  kept: (where: StreamsKeptIn) => void,
): (session: Http2Session) => StreamsById<unknown> | undefined {
  return (session) => {
    const byId = keepStreamsById(session);
    kept(byId ? 'by_id' : 'node_map');
    if (!byId && !layoutWarned) {
      layoutWarned = true;
      logger.warn(
        { nodeVersion: process.version },
        "node:http2 session state not laid out as session-streams.ts expects: each connection's streams stay in node's Map " +
          '(more garbage collection under load; see trellis_authz_grpc_connections_total)',
      );
    }
    return byId;
  };
}

/** The registry `session` keeps its streams in (tests). */
export function streamsOf(session: Http2Session): unknown {
  return sessionState(session)?.streams;
}

function sessionState(session: Http2Session): { streams: unknown } | undefined {
  const key = Object.getOwnPropertySymbols(session).find((symbol) => symbol.description === 'state');
  const state = key && (session as unknown as Record<symbol, unknown>)[key];
  return typeof state === 'object' && state !== null && 'streams' in state && 'pendingStreams' in state
    ? (state as { streams: unknown })
    : undefined;
}
