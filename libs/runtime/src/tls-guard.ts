// What a connection that has not yet proven anything may cost a TLS listener. grpc-js's
// TLS ports get Node's defaults, which its options do not reach: a 120 s handshake timeout,
// no deadline between the handshake and the first HTTP/2 bytes, no cap on how many such
// connections are open at once. guardTlsServer keeps the per-connection bookkeeping all three
// need: a deadline from accept to the end of the handshake (the role of Node's
// handshakeTimeout), an optional further step with its own deadline (for gRPC, the HTTP/2
// preface), and a count of connections not through them, beyond which a new connection is
// closed at accept.
import type { Socket } from 'node:net';
import type { Server as TlsServer, TLSSocket } from 'node:tls';

export const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_TLS_MAX_PENDING_CONNECTIONS = 1_000;

export interface TlsConnectionLimits {
  /** From accept to the handshake's end, absolute. */
  handshakeTimeoutMs: number;
  /** Connections accepted and not yet through (pending) at once; a further one is closed at accept. */
  maxPendingConnections: number;
}

/** Why the guard closed a connection (a metric label). */
export type TlsRefusal = 'too_many_pending' | 'handshake_timeout' | 'handshake_failed' | 'preface_timeout';

/**
 * A step a connection must finish after its handshake before it stops counting as pending
 * (the gRPC listener: the HTTP/2 preface), within `timeoutMs` of the handshake. `start`
 * calls `done` when it has; the connection is closed with `refusal` if that is too late.
 */
export interface AfterHandshakeStep {
  timeoutMs: number;
  refusal: TlsRefusal;
  start(socket: TLSSocket, done: () => void): void;
}

export interface TlsGuardOptions extends TlsConnectionLimits {
  onRefused?: (reason: TlsRefusal) => void;
  afterHandshake?: AfterHandshakeStep;
}

export interface TlsGuard {
  /** Connections accepted and not yet through. */
  readonly pending: number;
  /** Closes every pending connection (the listener is closing). */
  closePending(): void;
}

interface PendingConnection {
  raw: Socket;
  deadline: NodeJS.Timeout;
}

/** Guards `server` (a tls.Server or https.Server, before it listens). */
export function guardTlsServer(server: TlsServer, options: TlsGuardOptions): TlsGuard {
  // Keyed by the TCP 4-tuple, unique among open connections: the TLSSocket that 'secureConnection'
  // hands over is a new object wrapping the raw socket 'connection' saw, with no public link back.
  const pending = new Map<string, PendingConnection>();
  const refuse = (reason: TlsRefusal, socket: Socket) => {
    options.onRefused?.(reason);
    socket.destroy();
  };
  const release = (key: string, connection: PendingConnection) => {
    if (pending.get(key) !== connection) return;
    clearTimeout(connection.deadline);
    pending.delete(key);
  };

  // Runs after tls.Server's own listener has wrapped `raw` in a TLSSocket; destroying `raw` closes both.
  server.on('connection', (raw: Socket) => {
    if (pending.size >= options.maxPendingConnections) return refuse('too_many_pending', raw);
    const key = tlsConnectionKey(raw);
    if (key === undefined) return raw.destroy(); // already gone
    const connection: PendingConnection = {
      raw,
      deadline: setTimeout(() => refuse('handshake_timeout', raw), options.handshakeTimeoutMs),
    };
    pending.set(key, connection);
    raw.once('close', () => release(key, connection));
  });

  server.on('secureConnection', (socket: TLSSocket) => {
    const key = tlsConnectionKey(socket);
    const connection = key === undefined ? undefined : pending.get(key);
    if (key === undefined || connection === undefined) return socket.destroy(); // not one this guard accepted: fail closed
    clearTimeout(connection.deadline);
    const step = options.afterHandshake;
    if (!step) return release(key, connection);
    connection.deadline = setTimeout(() => refuse(step.refusal, socket), step.timeoutMs);
    step.start(socket, () => release(key, connection));
  });

  // A failed handshake: https.Server closes the socket itself, a bare tls.Server leaves it open. A client
  // that hangs up (a TCP probe, or a socket this guard closed) is not a failure worth counting.
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    if (err.code !== 'ECONNRESET') options.onRefused?.('handshake_failed');
    socket.destroy();
  });

  return {
    get pending() {
      return pending.size;
    },
    closePending() {
      for (const [key, connection] of pending) {
        release(key, connection);
        connection.raw.destroy();
      }
    },
  };
}

/** A connection's TCP 4-tuple: the same for a raw socket and the TLSSocket wrapping it; undefined once it is gone. */
export function tlsConnectionKey(socket: Socket): string | undefined {
  const { remoteAddress, remotePort, localAddress, localPort } = socket;
  if (remoteAddress === undefined || remotePort === undefined) return undefined;
  return `${remoteAddress}|${remotePort}|${localAddress ?? ''}|${localPort ?? ''}`;
}
