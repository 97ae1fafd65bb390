// The Redis breaker against a real Redis that goes away and comes back: it opens
// on failures, and once Redis is back it closes on its own timer (a PING as the
// half-open trial) — the gauge must not read "open" until the next Check.
import { Registry } from 'prom-client';
import { createLogger } from '@trellis/runtime';
import { eventually, startRedis, type TestRedis } from '@trellis/testing';
import { AuthzMetrics } from '../src/metrics';
import { createRedisClient, type RedisClient } from '../src/tokens/redis-client';
import { RedisTokenCache } from '../src/tokens/redis-token-cache';

jest.setTimeout(120_000);

describe('Redis breaker', () => {
  let redis: TestRedis;
  let client: RedisClient;
  let cache: RedisTokenCache;
  let metrics: AuthzMetrics;
  const gauge = async () => (await metrics.redisBreakerOpen.get()).values[0]?.value;

  beforeAll(async () => {
    redis = await startRedis();
    client = createRedisClient({ TRELLIS_REDIS_URL: redis.url, TRELLIS_REDIS_COMMAND_TIMEOUT_MS: 500 });
    metrics = new AuthzMetrics(new Registry());
    cache = new RedisTokenCache(client, { keyPrefix: 'breaker:', cooldownMs: 500 }, metrics, createLogger('authz', 'silent'));
    await eventually('Redis connected', () => client.status === 'ready', 60_000);
  });
  afterAll(async () => {
    cache?.close();
    client?.disconnect();
    await redis?.close();
  });

  it('opens while Redis is down and closes on its own once it is back, with no read asking', async () => {
    if (!redis.canRestart) return void console.warn('redis-breaker: this Redis cannot be stopped here; nothing to test');
    expect(await cache.get('k')).toEqual({ result: 'miss' });
    await redis.stop();
    try {
      // Reads fail (or are skipped once open) and each answers at once: the caller mints instead.
      await eventually(
        'the breaker open',
        async () => {
          expect(['error', 'skipped']).toContain((await cache.get('k')).result);
          return cache.breakerState === 'open';
        },
        60_000,
      );
      expect(await gauge()).toBe(1);
    } finally {
      await redis.start();
    }
    const back = Date.now();
    // No get/set/delete from here on: only the breaker's own probe can close it.
    await eventually('the breaker closed by its probe', async () => cache.breakerState === 'closed' && (await gauge()) === 0, 60_000);
    console.log(`Redis breaker closed ${Date.now() - back} ms after Redis came back, with no read`);
    expect(await cache.get('k')).toEqual({ result: 'miss' });
  });
});
