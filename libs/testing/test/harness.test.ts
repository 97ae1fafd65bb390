// The harness itself against the real servers it starts: data survives
// stop/start, ports stay, and close leaves nothing behind.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { eventually, startEtcd, startRedis } from '../src';
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
      await expect(client.kv.range({ key: Buffer.from(`${etcd.prefix}a`), revision: Number(compactedAt) - 1 })).rejects.toThrow(
        /compacted/,
      );
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
      await redisCommands(redis.url, [
        ['SELECT', String(redis.db)],
        ['SET', 'k', 'v'],
      ]);
      if (redis.canRestart) {
        await redis.stop();
        await redis.start();
      }
      expect(
        await redisCommands(redis.url, [
          ['SELECT', String(redis.db)],
          ['GET', 'k'],
        ]),
      ).toEqual(['OK', 'v']);
    } finally {
      await redis.close();
    }
  });
});

describe('leak protection', () => {
  it('kills the server when the test process dies without running exit hooks', async () => {
    // A separate node process starts etcd through the harness, prints its endpoint, and is then SIGKILLed.
    const dir = await mkdtemp(join(tmpdir(), 'trellis-leak-'));
    const bundle = join(dir, 'start-and-hang.js');
    await build({
      entryPoints: [join(__dirname, 'fixtures', 'start-and-hang.ts')],
      outfile: bundle,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      packages: 'external',
      logLevel: 'silent',
    });
    const workspace = join(__dirname, '..', '..', '..');
    const child = spawn(process.execPath, [bundle], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, NODE_PATH: join(workspace, 'node_modules') }, // the bundle lives in a temp dir
    });
    try {
      const endpoint = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /ENDPOINT (\S+)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.once('exit', (code) => reject(new Error(`fixture exited early with ${code}`)));
      });
      const healthy = () =>
        fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(10_000) }).then(
          (r) => r.ok,
          () => false,
        );
      expect(await healthy()).toBe(true);
      child.kill('SIGKILL');
      await eventually('the server to die with its test process', async () => !(await healthy()), 60_000, { intervalMs: 100 });
    } finally {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
