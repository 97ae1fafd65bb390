// The cache shared by authz replicas, in Redis. Fail-fast by construction: the
// client has no offline queue and a tight command timeout, and a breaker stops
// asking a Redis that keeps failing. Callers treat every failure as a miss and
// mint locally, so a slow or dead Redis costs a signature, never a decision.
import type { RedisClient } from './redis-client';
import type { Logger } from '@trellis/runtime';
import type { AuthzMetrics } from '../metrics';
import { CircuitBreaker } from './circuit-breaker';

export type SharedLookup = { result: 'hit'; token: string } | { result: 'miss' } | { result: 'error' } | { result: 'skipped' };

export interface SharedTokenCache {
  get(key: string): Promise<SharedLookup>;
  /** Best effort: failures are counted, never thrown. */
  set(key: string, token: string, ttlMs: number): void;
  /** Removes `key` if it still holds `token` (a replica may have replaced it meanwhile); best effort. */
  delete(key: string, token: string): void;
}

// Compare-and-delete in one step, so a good token written by another replica after the
// bad one was read is not removed with it.
const DELETE_IF_EQUAL = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

export interface RedisTokenCacheOptions {
  keyPrefix: string;
  failureThreshold?: number;
  cooldownMs?: number;
}

export class RedisTokenCache implements SharedTokenCache {
  private readonly breaker: CircuitBreaker;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: RedisTokenCacheOptions,
    private readonly metrics: AuthzMetrics,
    private readonly logger: Logger,
  ) {
    this.breaker = new CircuitBreaker({
      failureThreshold: options.failureThreshold ?? 3,
      cooldownMs: options.cooldownMs ?? 2_000,
      // The breaker checks Redis itself when a cooldown ends, so the gauge says "closed" soon after Redis is back, not at the next Check.
      probe: () => this.redis.ping(),
      onStateChange: (state) => {
        metrics.redisBreakerOpen.set(state === 'open' ? 1 : 0);
        if (state === 'open') logger.warn('Redis token cache unavailable: bypassing it and minting locally');
        else if (state === 'closed') logger.info('Redis token cache available again');
      },
    });
    metrics.redisBreakerOpen.set(0);
  }

  /** Stops the breaker's probe timer (shutdown). */
  close(): void {
    this.breaker.close();
  }

  get breakerState(): string {
    return this.breaker.state;
  }

  async get(key: string): Promise<SharedLookup> {
    if (!this.breaker.allow()) return { result: 'skipped' };
    try {
      const token = await this.redis.get(this.options.keyPrefix + key);
      this.breaker.success();
      return token === null ? { result: 'miss' } : { result: 'hit', token };
    } catch (err) {
      this.failed('get', err);
      return { result: 'error' };
    }
  }

  set(key: string, token: string, ttlMs: number): void {
    if (ttlMs <= 0 || !this.breaker.allow()) return;
    this.redis.set(this.options.keyPrefix + key, token, 'PX', ttlMs).then(
      () => this.breaker.success(),
      (err: unknown) => this.failed('set', err),
    );
  }

  delete(key: string, token: string): void {
    if (!this.breaker.allow()) return;
    this.redis.eval(DELETE_IF_EQUAL, 1, this.options.keyPrefix + key, token).then(
      () => this.breaker.success(),
      (err: unknown) => this.failed('delete', err),
    );
  }

  private failed(operation: string, err: unknown): void {
    this.breaker.failure();
    this.metrics.redisErrors.inc({ operation });
    this.logger.debug({ err, operation }, 'Redis command failed');
  }
}
