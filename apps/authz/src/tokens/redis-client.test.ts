import { redisConnection } from './redis-client';

const base = { TRELLIS_REDIS_URL: 'redis://127.0.0.1:6379', TRELLIS_REDIS_COMMAND_TIMEOUT_MS: 50 };
const files: Record<string, string> = { '/run/redis/password': 'from-file\n', '/run/redis/ca.pem': 'CA PEM' };
const read = (path: string) => files[path]!;

describe('redisConnection', () => {
  it('takes the ACL user and password from the URL, or from TRELLIS_REDIS_USERNAME and a password file', () => {
    const fromUrl = redisConnection({ ...base, TRELLIS_REDIS_URL: 'redis://authz:p%40ss@redis.internal:6380/3' }, read);
    expect(fromUrl).toMatchObject({
      mode: 'standalone',
      options: { host: 'redis.internal', port: 6380, db: 3, username: 'authz', password: 'p@ss' },
    });
    const fromFile = redisConnection(
      { ...base, TRELLIS_REDIS_USERNAME: 'authz', TRELLIS_REDIS_PASSWORD_FILE: '/run/redis/password' },
      read,
    );
    expect(fromFile.options).toMatchObject({ username: 'authz', password: 'from-file' });
    expect(fromFile.options).not.toHaveProperty('tls');
  });

  it('uses TLS for rediss:// and verifies the server against the given roots', () => {
    const tls = redisConnection(
      { ...base, TRELLIS_REDIS_URL: 'rediss://redis.internal:6380', TRELLIS_REDIS_TLS_CA_FILE: '/run/redis/ca.pem' },
      read,
    );
    expect(tls.options).toMatchObject({ tls: { ca: 'CA PEM' } });
    expect(JSON.stringify(tls.options)).not.toContain('rejectUnauthorized');
  });

  it('builds Sentinel and Cluster connections from ioredis options, with the same credentials and TLS', () => {
    const sentinels = [
      { host: 's1', port: 26379 },
      { host: 's2', port: 26379 },
    ];
    const sentinel = redisConnection(
      {
        ...base,
        TRELLIS_REDIS_URL: 'rediss://authz:pw@ignored:6379/2',
        TRELLIS_REDIS_SENTINELS: sentinels,
        TRELLIS_REDIS_SENTINEL_MASTER: 'mymaster',
      },
      read,
    );
    expect(sentinel).toMatchObject({
      mode: 'sentinel',
      options: {
        name: 'mymaster',
        sentinels,
        db: 2,
        username: 'authz',
        password: 'pw',
        sentinelPassword: 'pw',
        enableTLSForSentinelMode: true,
      },
    });
    const cluster = redisConnection(
      { ...base, TRELLIS_REDIS_URL: 'redis://authz:pw@ignored', TRELLIS_REDIS_CLUSTER_NODES: sentinels },
      read,
    );
    expect(cluster).toMatchObject({ mode: 'cluster', nodes: sentinels, options: { redisOptions: { username: 'authz', password: 'pw' } } });
  });
});
