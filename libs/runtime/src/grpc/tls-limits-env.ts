// The gRPC TLS limits read from the environment, apart from tls-limits.ts so that a server handed
// its limits (authz's Check worker) does not load zod and the config schemas.
import { z } from 'zod';
import { loadConfig, tlsLimitsEnv } from '../config';
import { grpcTlsLimitsFrom, type GrpcTlsLimits } from './tls-limits';

/**
 * The limits the TRELLIS_TLS_* variables of `env` set (tlsLimitsEnv's names and bounds), for a process
 * without a config schema of its own (a proxyless service through the SDK); a bad value throws ConfigError naming it.
 */
export function grpcTlsLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): GrpcTlsLimits {
  return grpcTlsLimitsFrom(loadConfig(z.object(tlsLimitsEnv), env));
}
