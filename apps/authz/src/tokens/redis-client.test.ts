import { Cluster, Redis } from 'ioredis';
import { createTestPki, type TestPki } from '@trellis/testing';
import { redisConnection, reloadRedisFiles } from './redis-client';

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

describe('reloadRedisFiles', () => {
  let pki: TestPki;
  let other: TestPki;
  beforeAll(() => {
    pki = createTestPki();
    other = createTestPki();
  });
  afterAll(() => {
    pki?.remove();
    other?.remove();
  });

  const config = {
    ...base,
    TRELLIS_REDIS_URL: 'rediss://redis.internal:6380',
    TRELLIS_REDIS_USERNAME: 'authz',
    TRELLIS_REDIS_PASSWORD_FILE: '/run/redis/password',
    TRELLIS_REDIS_TLS_CA_FILE: '/run/redis/ca.pem',
    TRELLIS_REDIS_TLS_CERT_FILE: '/run/redis/client.pem',
    TRELLIS_REDIS_TLS_KEY_FILE: '/run/redis/client-key.pem',
  };
  const filesOf = (p: TestPki, password: string): Record<string, string> => ({
    '/run/redis/password': `${password}\n`,
    '/run/redis/ca.pem': p.ca.toString(),
    '/run/redis/client.pem': p.client('authz').cert.toString(),
    '/run/redis/client-key.pem': p.client('authz').key.toString(),
  });
  const reader = (content: Record<string, string>) => (path: string) => {
    if (!(path in content)) throw new Error(`ENOENT: ${path}`);
    return content[path]!;
  };

  it('puts a new password and TLS files into the options the next connection reads; the same files are unchanged', () => {
    const client = new Redis({ ...redisConnection(config, reader(filesOf(pki, 'old-password'))).options, lazyConnect: true });
    try {
      expect(reloadRedisFiles(config, client, reader(filesOf(pki, 'old-password')))).toBe('unchanged');
      expect(reloadRedisFiles(config, client, reader(filesOf(other, 'new-password')))).toBe('changed');
      expect(client.options).toMatchObject({
        password: 'new-password',
        tls: { ca: other.ca.toString(), cert: other.client('authz').cert.toString() },
      });
    } finally {
      client.disconnect();
    }
  });

  it('changes nothing when a file cannot be read or the key is not the certificate’s', () => {
    const client = new Redis({ ...redisConnection(config, reader(filesOf(pki, 'old-password'))).options, lazyConnect: true });
    try {
      const missing = filesOf(other, 'new-password');
      delete missing['/run/redis/password'];
      expect(() => reloadRedisFiles(config, client, reader(missing))).toThrow(/ENOENT/);
      const mismatched = { ...filesOf(other, 'new-password'), '/run/redis/client-key.pem': pki.client('authz').key.toString() };
      expect(() => reloadRedisFiles(config, client, reader(mismatched))).toThrow(/key values mismatch/);
      expect(client.options).toMatchObject({ password: 'old-password', tls: { ca: pki.ca.toString() } });
    } finally {
      client.disconnect();
    }
  });

  it('updates a cluster’s options for the node connections it opens next', () => {
    const clusterConfig = { ...config, TRELLIS_REDIS_CLUSTER_NODES: [{ host: 'r1', port: 6379 }] };
    const connection = redisConnection(clusterConfig, reader(filesOf(pki, 'old-password')));
    if (connection.mode !== 'cluster') throw new Error('expected a cluster connection');
    const cluster = new Cluster(connection.nodes, { ...connection.options, lazyConnect: true });
    try {
      expect(reloadRedisFiles(clusterConfig, cluster, reader(filesOf(other, 'new-password')))).toBe('changed');
      expect(cluster.options.redisOptions).toMatchObject({ password: 'new-password', tls: { ca: other.ca.toString() } });
    } finally {
      cluster.disconnect();
    }
  });
});
