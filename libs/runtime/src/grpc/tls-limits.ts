// What a connection may cost a gRPC TLS port before it is through its handshake and HTTP/2 preface,
// and where those limits come from. Apart from grpc-server.ts so that the SDK's proxyless server can
// share them (through @trellis/runtime/tls) without grpc-server's health-check kit.
import { z } from 'zod';
import { loadConfig, tlsLimitsEnv } from '../config';
import { DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS, DEFAULT_TLS_MAX_PENDING_CONNECTIONS, type TlsConnectionLimits } from '../tls-guard';

export const DEFAULT_HTTP2_PREFACE_TIMEOUT_MS = 10_000;

/** What a TLS connection may cost before it is through its handshake and HTTP/2 preface. */
export interface GrpcTlsLimits extends TlsConnectionLimits {
  /** From the handshake's end to the client's HTTP/2 preface (the magic and its first SETTINGS), absolute. */
  prefaceTimeoutMs: number;
}

export const DEFAULT_GRPC_TLS_LIMITS: GrpcTlsLimits = {
  handshakeTimeoutMs: DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
  prefaceTimeoutMs: DEFAULT_HTTP2_PREFACE_TIMEOUT_MS,
  maxPendingConnections: DEFAULT_TLS_MAX_PENDING_CONNECTIONS,
};

/** The limits an app's `tlsLimitsEnv` variables set; the defaults where an embedder leaves one out. */
export function grpcTlsLimitsFrom(config: {
  TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS?: number | undefined;
  TRELLIS_HTTP2_PREFACE_TIMEOUT_MS?: number | undefined;
  TRELLIS_TLS_MAX_PENDING_CONNECTIONS?: number | undefined;
}): GrpcTlsLimits {
  return {
    handshakeTimeoutMs: config.TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS ?? DEFAULT_GRPC_TLS_LIMITS.handshakeTimeoutMs,
    prefaceTimeoutMs: config.TRELLIS_HTTP2_PREFACE_TIMEOUT_MS ?? DEFAULT_GRPC_TLS_LIMITS.prefaceTimeoutMs,
    maxPendingConnections: config.TRELLIS_TLS_MAX_PENDING_CONNECTIONS ?? DEFAULT_GRPC_TLS_LIMITS.maxPendingConnections,
  };
}

/**
 * The limits the TRELLIS_TLS_* variables of `env` set (tlsLimitsEnv's names and bounds), for a process
 * without a config schema of its own (a proxyless service through the SDK); a bad value throws ConfigError naming it.
 */
export function grpcTlsLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): GrpcTlsLimits {
  return grpcTlsLimitsFrom(loadConfig(z.object(tlsLimitsEnv), env));
}
