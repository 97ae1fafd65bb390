// The harness itself against the real servers it starts: data survives
// stop/start, ports stay, and close leaves nothing behind.
import { startEtcd, startRedis } from '../src';
import { redisCommands } from '../src/resp';

describe('startEtcd', () => {
  it('serves a private prefix, keeps data across a restart and compacts', async () => {
    const etcd = await startEtcd();
    try {
      expect(etcd.prefix).toMatch(/^\/trellis-test\/[0-9a-f]+\/$/);
      const client = etcd.client();
      await client.put(`${etcd.prefix}a`).value('1');
      if (etcd.canRestart) {
        await etcd.restart();
        expect(await client.get(`${etcd.prefix}a`).string()).toBe('1');
      }
      const compactedAt = await etcd.compact();
      await expect(client.kv.range({ key: Buffer.from(`${etcd.prefix}a`), revision: Number(compactedAt) - 1 })).rejects.toThrow(/compacted/);
    } finally {
      await etcd.close();
    }
  });
});

describe('startRedis', () => {
  it('serves its own database and keeps data across stop/start', async () => {
    const redis = await startRedis();
    try {
      expect(redis.url).toMatch(new RegExp(`/${redis.db}$`));
      await redisCommands(redis.url, [['SELECT', String(redis.db)], ['SET', 'k', 'v']]);
      if (redis.canRestart) {
        await redis.stop();
        await redis.start();
      }
      expect(await redisCommands(redis.url, [['SELECT', String(redis.db)], ['GET', 'k']])).toEqual(['OK', 'v']);
    } finally {
      await redis.close();
    }
  });
});
