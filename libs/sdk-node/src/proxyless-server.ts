// The SDK's proxyless server: an XdsServer whose TLS (the control plane's, from the certificate
// provider) has the limits every Trellis TLS port has (docs/security.md "Limits on the wire"): an
// absolute deadline from accept to the end of the handshake, one from there to the client's HTTP/2
// preface, and a cap on connections not through both. grpc-js terminates that TLS itself, with Node's
// 120 s handshake default, where the control plane's guarded listener (bindGrpcServer) cannot reach
// it; so the same guard (guardTlsServer) goes on each TLS server grpc-js builds for the XdsServer.
import type { Server } from '@grpc/grpc-js';
import type { XdsServer } from '@grpc/grpc-js-xds';
import type { Http2SecureServer, ServerHttp2Session } from 'node:http2';
import {
  grpcTlsLimitsFromEnv,
  guardTlsServer,
  tlsConnectionKey,
  type GrpcTlsLimits,
  type TlsGuard,
  type TlsRefusal,
} from '@trellis/runtime/tls';
import { onSecureHttp2Servers } from './grpc-secure-servers';

export type { GrpcTlsLimits as ProxylessTlsLimits, TlsRefusal } from '@trellis/runtime/tls';

export interface ProxylessTlsOptions {
  /**
   * Default: TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS, TRELLIS_HTTP2_PREFACE_TIMEOUT_MS (1 000-120 000, default
   * 10 000 each) and TRELLIS_TLS_MAX_PENDING_CONNECTIONS (1-1 000 000, default 1 000) from the environment;
   * a bad value throws, naming the variable.
   */
  tlsLimits?: GrpcTlsLimits;
  /** Each connection a limit closes (for a metric or a log line). */
  onTlsRefused?: (reason: TlsRefusal) => void;
}

export type ProxylessServerOptions = NonNullable<ConstructorParameters<typeof XdsServer>[0]> & ProxylessTlsOptions;

const guardsOf = new WeakMap<Server, Set<TlsGuard>>();

/**
 * An XdsServer (grpc-js-xds: listeners, TLS and RBAC from the control plane) with the TLS limits
 * (limitProxylessTls). grpc-js-xds is loaded here, not when the SDK is: it reads its GRPC_XDS_*
 * switches (GRPC_XDS_EXPERIMENTAL_RBAC) when it loads, and a service may set them after importing the SDK.
 */
export async function createProxylessServer(options: ProxylessServerOptions = {}): Promise<XdsServer> {
  const { tlsLimits, onTlsRefused, ...serverOptions } = options;
  const { XdsServer } = await import('@grpc/grpc-js-xds');
  return limitProxylessTls(new XdsServer(serverOptions), {
    ...(tlsLimits ? { tlsLimits } : {}),
    ...(onTlsRefused ? { onTlsRefused } : {}),
  });
}

/**
 * Puts the TLS limits on `server` (an XdsServer, before bindAsync): every TLS server grpc-js builds for it
 * from then on closes a connection still in its handshake after `handshakeTimeoutMs`, one that has not sent
 * its HTTP/2 preface `prefaceTimeoutMs` after that, and a new one while `maxPendingConnections` are that far
 * (per filter chain of a bound port: the control plane sends one).
 */
export function limitProxylessTls<S extends Server>(server: S, options: ProxylessTlsOptions = {}): S {
  const limits = options.tlsLimits ?? grpcTlsLimitsFromEnv();
  const guards = new Set<TlsGuard>();
  guardsOf.set(server, guards);
  onSecureHttp2Servers(server, (secureServer) => {
    const guard = guardHttp2SecureServer(secureServer, limits, options.onTlsRefused);
    guards.add(guard);
    // A filter chain the control plane replaced: its server closes, its connections in progress with it.
    secureServer.once('close', () => {
      guards.delete(guard);
      guard.closePending();
    });
  });
  return server;
}

/** Connections accepted by `server`'s TLS (limitProxylessTls) and not yet through their handshake and preface (a gauge). */
export function pendingProxylessTlsConnections(server: Server): number {
  return [...(guardsOf.get(server) ?? [])].reduce((sum, guard) => sum + guard.pending, 0);
}

/**
 * guardTlsServer on an http2 secure server, the HTTP/2 preface being the step after the handshake.
 * node:http2 owns the socket once the handshake is done (it starts the session in its own
 * 'secureConnection' listener, which runs before the guard's), so the preface's end is the session's
 * 'remoteSettings' (the client's first SETTINGS frame, which completes its preface), not bytes read here.
 */
export function guardHttp2SecureServer(
  secureServer: Http2SecureServer,
  limits: GrpcTlsLimits,
  onRefused?: (reason: TlsRefusal) => void,
): TlsGuard {
  const sessions = new Map<string, ServerHttp2Session>();
  secureServer.on('session', (session: ServerHttp2Session) => {
    const key = tlsConnectionKey(session.socket);
    if (key === undefined) return;
    sessions.set(key, session);
    session.once('close', () => {
      if (sessions.get(key) === session) sessions.delete(key);
    });
  });
  return guardTlsServer(secureServer, {
    ...limits,
    ...(onRefused ? { onRefused } : {}),
    afterHandshake: {
      timeoutMs: limits.prefaceTimeoutMs,
      refusal: 'preface_timeout',
      start: (socket, done) => {
        const key = tlsConnectionKey(socket);
        const session = key === undefined ? undefined : sessions.get(key);
        if (key !== undefined) sessions.delete(key);
        // No session: not HTTP/2 (node:http2 answers it); the deadline closes it if it stays.
        session?.once('remoteSettings', done);
      },
    },
  });
}
