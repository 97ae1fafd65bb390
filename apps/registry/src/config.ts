// The registry's configuration: TRELLIS_* variables, validated at start.
import { ConfigError, env, etcdEnvSchema, httpLimitsEnv, loadConfig } from '@trellis/runtime';
import { z } from 'zod';

export const registryEnvSchema = etcdEnvSchema.extend({
  ...httpLimitsEnv,
  TRELLIS_HTTP_PORT: env.port(8080),
  TRELLIS_HOST: env.host('0.0.0.0'),
  TRELLIS_LOG_LEVEL: env.logLevel(),
  /** Bootstrap/automation token with every right; unset means no admin token is accepted. */
  TRELLIS_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /**
   * Instead of TRELLIS_ADMIN_TOKEN: a file holding it, read again on the TRELLIS_SERVICE_CREDENTIALS_RELOAD_SECONDS
   * poll and on SIGHUP, so a rotation needs no restart. A broken or emptied file keeps the last good token.
   */
  TRELLIS_ADMIN_TOKEN_FILE: z.string().min(1).optional(),
  /** JWKS that verifies team tokens (JWTs carrying a `team` claim). Unset: only the admin token can write. */
  TRELLIS_AUTH_JWKS_URL: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional(),
  TRELLIS_AUTH_ISSUER: z.string().min(1).optional(),
  TRELLIS_AUTH_AUDIENCE: z.string().min(1).default('trellis-registry'),
  /** Longest life (exp - iat) a team token may claim; one with a future iat beyond a minute is refused too. */
  TRELLIS_AUTH_MAX_TOKEN_LIFETIME_SECONDS: env.int(86_400, 60, 30 * 86_400),
  /**
   * Instance agents' credentials: a file of `service:secret` lines or a directory of files
   * named by service — the same secrets authz takes on POST /v1/token. Each lets its
   * service's agent register, heartbeat, drain and deregister that service's instances only.
   */
  TRELLIS_SERVICE_CREDENTIALS: z.string().min(1).optional(),
  /**
   * How often TRELLIS_SERVICE_CREDENTIALS is read again (SIGHUP reads it at once): a credential
   * removed from it is refused, and one added accepted, within this time, with no restart.
   */
  TRELLIS_SERVICE_CREDENTIALS_RELOAD_SECONDS: env.int(5, 1, 3_600),
  /** Signs the web form's CSRF tokens; unset, a random per-process secret is used (forms break across replicas). */
  TRELLIS_CSRF_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  /** Instead of TRELLIS_CSRF_SECRET: a file holding it, followed as TRELLIS_ADMIN_TOKEN_FILE is. */
  TRELLIS_CSRF_SECRET_FILE: z.string().min(1).optional(),
  TRELLIS_READS_REQUIRE_AUTH: env.bool(false),
  TRELLIS_MAX_BODY_BYTES: env.int(64 * 1024, 1024, 16 * 1024 * 1024),
  /** Set when browsers reach the UI over HTTPS: Secure cookies, HSTS and upgrade-insecure-requests. */
  TRELLIS_SECURE_COOKIES: env.bool(false),
});

export type RegistryEnv = z.infer<typeof registryEnvSchema>;

export function loadRegistryConfig(source: NodeJS.ProcessEnv = process.env): RegistryEnv {
  const config = loadConfig(registryEnvSchema, source);
  // Which of the two would rule is a guess: refuse it, naming both.
  const both = (['TRELLIS_ADMIN_TOKEN', 'TRELLIS_CSRF_SECRET'] as const).filter((name) => config[name] && config[`${name}_FILE`]);
  if (both.length > 0) throw new ConfigError(both.map((name) => `${name} and ${name}_FILE are both set: set one`));
  return config;
}
