// The defaults of a gRPC server's connection management (config.ts's grpcConnectionEnv, grpc-server.ts),
// apart from config.ts so that a gRPC server without a config schema (authz's Check worker) does not load zod.

/** Five minutes: a silent client is let go soon, a client between bursts of calls rarely reconnects. */
export const DEFAULT_GRPC_MAX_CONNECTION_IDLE_MS = 300_000;
/** As istiod's: time for a response in flight to arrive, short enough that the client soon moves. */
export const DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_MS = 10_000;
