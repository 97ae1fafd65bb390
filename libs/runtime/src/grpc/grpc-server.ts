// The gRPC side of every app that has one: bind, a health service that follows
// readiness, graceful stop.
import { lookup } from 'node:dns/promises';
import { createServer as createNetServer, isIP, type Server as NetServer, type Socket } from 'node:net';
import {
  createServer as createTlsServer,
  type Server as TlsServer,
  type SecureContextOptions,
  type TlsOptions,
  type TLSSocket,
} from 'node:tls';
import { experimental, ServerCredentials, type ChannelOptions, type Server } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { DEFAULT_GRPC_LISTEN_BACKLOG, DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_MS, DEFAULT_GRPC_MAX_CONNECTION_IDLE_MS } from '../config';
import type { Health } from '../health';
import { guardTlsServer, type TlsGuard, type TlsRefusal } from '../tls-guard';
import { http2PrefaceProgress } from './http2-preface';
import { DEFAULT_GRPC_TLS_LIMITS, type GrpcTlsLimits } from './tls-limits';

export type { GrpcTlsLimits } from './tls-limits';

/** gRFC A9 connection management of a gRPC server (grpcConnectionEnv says what each does); 0 or absent: no limit. */
export interface GrpcConnectionLimits {
  maxConnectionIdleMs?: number;
  maxConnectionAgeMs?: number;
  /** After the age's GOAWAY; absent: DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_MS. 0: none (cut at the GOAWAY). */
  maxConnectionAgeGraceMs?: number;
  /** The port's listen backlog (GrpcBindOptions.listenBacklog); bindGrpcServer takes it, grpc-js's options do not. */
  listenBacklog?: number;
}

/** The limits an app's grpcConnectionEnv variables set; the defaults (its own age) where an embedder leaves one out. */
export function grpcConnectionLimitsFrom(
  config: {
    TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS?: number | undefined;
    TRELLIS_GRPC_MAX_CONNECTION_AGE_MS?: number | undefined;
    TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS?: number | undefined;
    TRELLIS_GRPC_LISTEN_BACKLOG?: number | undefined;
  },
  defaults: { maxConnectionAgeMs: number },
): GrpcConnectionLimits {
  return {
    maxConnectionIdleMs: config.TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS ?? DEFAULT_GRPC_MAX_CONNECTION_IDLE_MS,
    maxConnectionAgeMs: config.TRELLIS_GRPC_MAX_CONNECTION_AGE_MS ?? defaults.maxConnectionAgeMs,
    maxConnectionAgeGraceMs: config.TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS ?? DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_MS,
    listenBacklog: config.TRELLIS_GRPC_LISTEN_BACKLOG ?? DEFAULT_GRPC_LISTEN_BACKLOG,
  };
}

/**
 * The grpc-js server options for `limits`, for `new Server(...)` (grpc-js reads them there and applies
 * them to every connection, the guarded TLS port's injected ones too). A limit of 0 is left out: grpc-js
 * would read 0 as "at once", and it reads an absent one as none. An age always comes with a grace:
 * without one grpc-js never cuts a GOAWAY'd connection whose stream stays open, and an ADS stream always does.
 */
export function grpcConnectionOptions(limits: GrpcConnectionLimits): ChannelOptions {
  const options: ChannelOptions = {};
  if (limits.maxConnectionIdleMs) options['grpc.max_connection_idle_ms'] = limits.maxConnectionIdleMs;
  if (limits.maxConnectionAgeMs) {
    options['grpc.max_connection_age_ms'] = limits.maxConnectionAgeMs;
    options['grpc.max_connection_age_grace_ms'] = limits.maxConnectionAgeGraceMs ?? DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_MS;
  }
  return options;
}

export interface GrpcBindOptions {
  /** Applies to TLS credentials only. */
  tlsLimits?: GrpcTlsLimits;
  /** Each connection the TLS guard closes (a metric). */
  onTlsRefused?: (reason: TlsRefusal) => void;
  /**
   * listen(2)'s backlog: connections the kernel completes and holds until the process accepts them (Linux caps it
   * at net.core.somaxconn). Absent: DEFAULT_GRPC_LISTEN_BACKLOG (grpc-js's bindAsync always uses Node's 511). A connect storm beyond it
   * (every Envoy of a cell reconnecting at once) overflows the queue; Linux then answers with SYN cookies and drops
   * the handshake's ACK, and a client that sends more than one segment before it is accepted is reset.
   */
  listenBacklog?: number;
}

/** What stopGrpcServer closes besides the grpc-js server: the listeners bindGrpcServer opened for it. */
const listenersOf = new WeakMap<Server, Array<{ close(): void }>>();
const guards = new WeakMap<Server, TlsGuard[]>();

/**
 * Binds `server` to `host:port` (IPv6 literals allowed); resolves with the bound port. The port's
 * listeners are this module's, not grpc-js's bindAsync (whose listen backlog is Node's fixed 511):
 * each accepted connection goes to grpc-js through its connection injector. With TLS credentials the
 * port is a guarded listener (listenGuardedTls): short absolute deadlines for the handshake and the
 * HTTP/2 preface, and a cap on connections not yet through them.
 */
export function bindGrpcServer(
  server: Server,
  host: string,
  port: number,
  credentials: ServerCredentials = ServerCredentials.createInsecure(),
  options: GrpcBindOptions = {},
): Promise<number> {
  if (credentials._isSecure()) return listenGuardedTls(server, host, port, credentials, options);
  return listenPlaintext(server, host, port, credentials, options.listenBacklog ?? DEFAULT_GRPC_LISTEN_BACKLOG);
}

/** Plaintext HTTP/2 straight to grpc-js: a listener per address of `host`, each connection injected as accepted. */
async function listenPlaintext(
  server: Server,
  host: string,
  port: number,
  credentials: ServerCredentials,
  backlog: number,
): Promise<number> {
  const injector = server.createConnectionInjector(credentials);
  const listeners: NetServer[] = [];
  const boundPort = await listenOnEveryAddress(
    host,
    port,
    () => {
      const listener = createNetServer((socket) => injector.injectConnection(socket));
      listeners.push(listener);
      return listener;
    },
    {
      backlog,
      discard: (listener) => {
        listeners.splice(listeners.indexOf(listener), 1);
        listener.close();
      },
    },
  ).catch((error: unknown) => {
    injector.destroy();
    throw error;
  });
  const close = () => {
    for (const listener of listeners) listener.close();
  };
  listenersOf.set(server, [...(listenersOf.get(server) ?? []), { close }]);
  return boundPort;
}

/** Connections accepted on `server`'s TLS ports and not yet through their handshake and preface (a gauge). */
export function pendingTlsConnections(server: Server): number {
  return (guards.get(server) ?? []).reduce((sum, guard) => sum + guard.pending, 0);
}

/**
 * grpc-js terminates TLS in http2.createSecureServer with Node's defaults (a 120 s handshake timeout,
 * no preface deadline, no cap), none of which its options reach. So the port's TLS is
 * terminated here, by a tls.Server built from the same credentials (their options, and every
 * certificate update they announce), and a connection reaches grpc-js (its connection injector,
 * plaintext HTTP/2 over the TLS socket) only once it has sent its HTTP/2 preface. grpc-js reads the
 * peer certificate from the TLS socket as before (getAuthContext).
 */
async function listenGuardedTls(
  server: Server,
  host: string,
  port: number,
  credentials: ServerCredentials,
  options: GrpcBindOptions,
): Promise<number> {
  const limits = options.tlsLimits ?? DEFAULT_GRPC_TLS_LIMITS;
  const interceptors = credentials._getInterceptors();
  const plaintext = ServerCredentials.createInsecure();
  const injector = server.createConnectionInjector(
    interceptors.length > 0 ? experimental.createServerCredentialsWithInterceptors(plaintext, interceptors) : plaintext,
  );
  // The credentials' latest certificate material: a listener opened later starts from it.
  let context = credentials._getSecureContextOptions();
  const listeners: Array<{ tlsServer: TlsServer; guard: TlsGuard }> = [];
  // As grpc-js does: no connection while the credentials have no certificate yet (a provider's first update is asynchronous).
  let loaded = context !== null;
  const onContext = (update: SecureContextOptions | null) => {
    if (update) {
      context = update;
      for (const { tlsServer } of listeners) tlsServer.setSecureContext(update);
    }
    loaded = update !== null;
  };
  credentials._addWatcher(onContext);

  const open = (): { tlsServer: TlsServer; guard: TlsGuard } => {
    const tlsServer = createTlsServer({
      ...(credentials._getConstructorOptions() as TlsOptions),
      ...context,
      ALPNProtocols: ['h2'],
    });
    tlsServer.prependListener('connection', (raw) => {
      if (!loaded) raw.destroy();
    });
    const guard = guardTlsServer(tlsServer, {
      ...limits,
      onRefused: options.onTlsRefused,
      afterHandshake: {
        timeoutMs: limits.prefaceTimeoutMs,
        refusal: 'preface_timeout',
        start: (socket, done) =>
          awaitHttp2Preface(socket, () => {
            done();
            injector.injectConnection(socket);
          }),
      },
    });
    // A TLS socket's errors after its handshake are its owner's to handle (nodejs/node#35824); HTTP/2 closes it.
    tlsServer.on('secureConnection', (socket: TLSSocket) => socket.on('error', () => undefined));
    return { tlsServer, guard };
  };

  const boundPort = await listenOnEveryAddress(
    host,
    port,
    () => {
      const listener = open();
      listeners.push(listener); // from now on, certificate updates reach it
      return listener.tlsServer;
    },
    {
      discard: (tlsServer) => {
        const listener = listeners.find((l) => l.tlsServer === tlsServer)!;
        listeners.splice(listeners.indexOf(listener), 1);
        listener.tlsServer.close();
        listener.guard.closePending();
      },
      backlog: options.listenBacklog ?? DEFAULT_GRPC_LISTEN_BACKLOG,
    },
  ).catch((error: unknown) => {
    credentials._removeWatcher(onContext);
    throw error;
  });
  const close = () => {
    for (const { tlsServer, guard } of listeners) {
      tlsServer.close();
      guard.closePending();
    }
    credentials._removeWatcher(onContext);
  };
  listenersOf.set(server, [...(listenersOf.get(server) ?? []), { close }]);
  guards.set(server, [...(guards.get(server) ?? []), ...listeners.map(({ guard }) => guard)]);
  return boundPort;
}

/** How a host name becomes addresses: dns.lookup's every address by default. */
export type HostResolver = (name: string) => Promise<Array<{ address: string }>>;

/** The addresses to listen on for `host`: an IP literal (brackets or not) as it is, a name's every address. */
export async function addressesOf(host: string, resolve: HostResolver = (name) => lookup(name, { all: true })): Promise<string[]> {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  if (isIP(bare) !== 0) return [bare];
  return [...new Set((await resolve(bare)).map(({ address }) => address))];
}

/**
 * Listens on every address `host` resolves to, as grpc-js binds a name (localhost: 127.0.0.1 and ::1),
 * one listener from `open` per address, all on one port: the first address's when asked for port 0.
 * An address that cannot be bound (no IPv6 on the host) is left out, its listener passed to `discard`;
 * fails only if none can be. Resolves with the port.
 */
export async function listenOnEveryAddress<L extends NetServer>(
  host: string,
  port: number,
  open: () => L,
  options: { discard?: (listener: L) => void; resolve?: HostResolver; backlog?: number | undefined } = {},
): Promise<number> {
  const discard = options.discard ?? ((listener: L) => listener.close());
  let boundPort = port;
  let opened = 0;
  let firstError: unknown;
  for (const address of await addressesOf(host, options.resolve)) {
    const listener = open();
    try {
      await listen(listener, boundPort, address, options.backlog);
    } catch (error) {
      discard(listener);
      firstError ??= error;
      continue;
    }
    opened++;
    const bound = listener.address();
    if (boundPort === 0 && typeof bound === 'object' && bound !== null) boundPort = bound.port;
  }
  if (opened === 0) throw firstError ?? new Error(`${host} resolves to no address`);
  return boundPort;
}

function listen(listener: NetServer, port: number, address: string, backlog: number | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen({ port, host: address, ...(backlog === undefined ? {} : { backlog }) }, () => {
      listener.off('error', reject);
      resolve();
    });
  });
}

/**
 * Reads `socket` until its HTTP/2 client preface is complete (or is not HTTP/2 at all, which HTTP/2
 * answers), then puts the bytes back (node:http2 reads a socket's buffered data when a session starts
 * on it: nodejs/node#35475) and calls `then`. For a listener that hands connections to grpc-js's
 * connection injector only once they speak HTTP/2 (here; the agent's xDS relay).
 */
export function awaitHttp2Preface(socket: Socket, then: () => void): void {
  const chunks: Buffer[] = [];
  let received = 0;
  let needs = 0; // known once the SETTINGS header is in; until then every chunk is looked at
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    received += chunk.length;
    if (received < needs) return;
    const progress = http2PrefaceProgress(Buffer.concat(chunks, received));
    if (progress.state === 'incomplete') {
      needs = progress.needs ?? 0;
      return;
    }
    socket.pause();
    socket.off('data', onData);
    socket.unshift(Buffer.concat(chunks, received));
    then();
  };
  socket.on('data', onData);
}

/** Stops accepting calls, lets in-flight ones finish for up to `graceMs`, then cuts the rest. */
export function stopGrpcServer(server: Server, graceMs: number): Promise<void> {
  for (const listener of listenersOf.get(server) ?? []) listener.close();
  listenersOf.delete(server);
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

/**
 * The standard grpc.health.v1 service on `server`, answering for the whole server
 * ('') and each of `services`: SERVING exactly while `health` is ready, so probes
 * and Envoy health checks see what /readyz says, and NOT_SERVING from the moment
 * shutdown begins. Driven by readiness transitions, not polled.
 */
export function serveGrpcHealth(server: Server, health: Health, services: readonly string[]): HealthImplementation {
  const names = ['', ...services];
  const grpcHealth = new HealthImplementation(Object.fromEntries(names.map((name) => [name, 'NOT_SERVING' as const])));
  grpcHealth.addToServer(server);
  const apply = (ready: boolean) => {
    for (const name of names) grpcHealth.setStatus(name, ready ? 'SERVING' : 'NOT_SERVING');
  };
  health.onChange(apply);
  apply(health.isReady);
  return grpcHealth;
}
