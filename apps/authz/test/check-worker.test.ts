// The Check worker (TRELLIS_CHECK_WORKER, the default) against a real etcd and Redis:
// hits and policy denials are answered in the worker without asking the main thread,
// registry changes reach it, a miss goes through Redis and a signature on the main
// thread, /metrics carries the worker's counts, and a dead worker is restarted with
// Checks failing closed in between. The decisions are the same with Checks on the
// main thread (TRELLIS_CHECK_WORKER=false), which the first block also runs.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { status, type ServiceError } from '@grpc/grpc-js';
import { KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { eventually, startEtcd, startRedis, type TestEtcd, type TestRedis } from '@trellis/testing';
import {
  counterValue,
  deniedReason,
  KeyDir,
  okHeaders,
  outbound,
  redisConnected,
  startTestAuthz,
  type StartedAuthz,
} from './support/harness';

const base = { team: 'shop', protocol: 'http' as const, port: 8080 };

describe('authz Check worker', () => {
  let etcd: TestEtcd;
  let redis: TestRedis;
  let keys: KeyDir;
  let store: MeshStore;

  beforeAll(async () => {
    [etcd, redis, keys] = await Promise.all([startEtcd(), startRedis(), KeyDir.create()]);
    await keys.addKey('first');
    store = new MeshStore(etcd.client(), new KeyLayout(etcd.prefix));
    await store.createService({ ...base, name: 'checkout', dependencies: [{ service: 'orders' }] }, 'test');
    await store.createService({ ...base, name: 'orders' }, 'test');
    await store.createService({ ...base, name: 'payments' }, 'test');
    await store.createService({ ...base, name: 'stock' }, 'test');
  }, 120_000);

  afterAll(async () => {
    await Promise.all([etcd?.close(), redis?.close(), keys?.remove()]);
  });

  describe.each([
    ['in the worker', 'true'],
    ['on the main thread', 'false'],
  ])('Checks %s', (_where, checkWorker) => {
    let a: StartedAuthz;
    const inWorker = checkWorker === 'true';
    // Each variant shares Redis only with its own replica.
    const env = { TRELLIS_CHECK_WORKER: checkWorker, TRELLIS_REDIS_KEY_PREFIX: `worker-${checkWorker}:` };

    beforeAll(async () => {
      a = await startTestAuthz(etcd, redis, keys, env);
      await redisConnected(a.authz);
    }, 120_000);

    afterAll(async () => {
      await a?.stop();
    });

    it('answers a repeated Check from memory, asking the main thread nothing', async () => {
      expect(a.authz.checkWorker !== undefined).toBe(inWorker);
      const first = okHeaders(await a.check(outbound('checkout', 'orders')));
      const calls = await counterValue(a.authz, 'trellis_authz_check_worker_calls_total');
      const hits = await counterValue(a.authz, 'trellis_authz_token_cache_total', { layer: 'memory', result: 'hit' });
      const minted = await counterValue(a.authz, 'trellis_authz_tokens_minted_total');
      for (let i = 0; i < 20; i++) expect(okHeaders(await a.check(outbound('checkout', 'orders')))).toEqual(first);
      expect(deniedReason(await a.check(outbound('checkout', 'payments'))).reason).toBe('undeclared');
      expect(await counterValue(a.authz, 'trellis_authz_check_worker_calls_total')).toBe(calls);
      expect(await counterValue(a.authz, 'trellis_authz_token_cache_total', { layer: 'memory', result: 'hit' })).toBe(hits + 20);
      expect(await counterValue(a.authz, 'trellis_authz_tokens_minted_total')).toBe(minted);
      expect(
        await counterValue(a.authz, 'trellis_authz_checks_total', { direction: 'outbound', reason: 'undeclared' }),
      ).toBeGreaterThanOrEqual(1);
    });

    it('a miss is answered through Redis and one signature, then kept', async () => {
      // Another replica signed first: this one finds the token in Redis and signs nothing.
      await store.updateService({ ...base, name: 'orders', dependencies: [{ service: 'payments' }] }, 'test');
      const replica = await startTestAuthz(etcd, redis, keys, env);
      try {
        const signed = okHeaders(await waitForOk(replica, 'orders', 'payments'));
        expect(await counterValue(replica.authz, 'trellis_authz_tokens_minted_total')).toBe(1);
        const minted = await counterValue(a.authz, 'trellis_authz_tokens_minted_total');
        const redisHits = await counterValue(a.authz, 'trellis_authz_token_cache_total', { layer: 'redis', result: 'hit' });
        const tokenCalls = await counterValue(a.authz, 'trellis_authz_check_worker_calls_total', { kind: 'token' });
        const fromRedis = okHeaders(await waitForOk(a, 'orders', 'payments'));
        expect(fromRedis['authorization']).toBe(signed['authorization']);
        expect(await counterValue(a.authz, 'trellis_authz_tokens_minted_total')).toBe(minted);
        expect(await counterValue(a.authz, 'trellis_authz_token_cache_total', { layer: 'redis', result: 'hit' })).toBe(redisHits + 1);
        expect(await counterValue(a.authz, 'trellis_authz_check_worker_calls_total', { kind: 'token' })).toBe(
          tokenCalls + (inWorker ? 1 : 0),
        );
      } finally {
        await replica.stop();
      }
      // A pair no one signed yet: one signature, by the main thread, for concurrent Checks.
      await store.updateService({ ...base, name: 'payments', dependencies: [{ service: 'stock' }] }, 'test');
      await waitForOk(a, 'payments', 'stock');
      const minted = await counterValue(a.authz, 'trellis_authz_tokens_minted_total');
      expect(minted).toBeGreaterThanOrEqual(1);
      const again = await Promise.all(Array.from({ length: 10 }, () => a.check(outbound('payments', 'stock'))));
      expect(new Set(again.map((r) => okHeaders(r)['authorization'])).size).toBe(1);
      expect(await counterValue(a.authz, 'trellis_authz_tokens_minted_total')).toBe(minted);
    });

    it('denies a pair once its declaration is removed from the registry', async () => {
      await store.updateService({ ...base, name: 'checkout', dependencies: [{ service: 'orders' }, { service: 'payments' }] }, 'test');
      await waitForOk(a, 'checkout', 'payments');
      await store.updateService({ ...base, name: 'checkout', dependencies: [{ service: 'orders' }] }, 'test');
      await eventually(
        'checkout → payments denied as undeclared',
        async () => deniedOrUndefined(await a.check(outbound('checkout', 'payments'))) === 'undeclared',
        60_000,
        { intervalMs: 100 },
      );
      expect(okHeaders(await a.check(outbound('checkout', 'orders')))['authorization']).toMatch(/^Bearer /);
    });

    it('shows its counts in /metrics, which promtool accepts', async () => {
      await a.check(outbound('checkout', 'orders'));
      const text = await (await fetch(`http://127.0.0.1:${a.authz.httpPort}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('trellis_authz_checks_total{direction="outbound",result="ok"'));
      expect(Number(line?.split(' ').pop())).toBeGreaterThanOrEqual(1);
      expect(text).toContain('process_start_time_seconds');
      expect(text).toMatch(/^trellis_authz_check_duration_seconds_count\{direction="outbound"\} [1-9]/m);
      // The worker's connection had its streams registry swapped (grpc/session-streams.ts) on this Node; the other series is there at 0.
      expect(text).toMatch(/^trellis_authz_grpc_connections_total\{streams="by_id"\} [1-9]/m);
      expect(text).toMatch(/^trellis_authz_grpc_connections_total\{streams="node_map"\} 0$/m);
      const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
      if (promtool) {
        const checked = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
        expect(checked.stdout + checked.stderr).toBe('');
      }
    });
  });

  describe('when the worker dies', () => {
    let a: StartedAuthz;
    let stopped = false;

    beforeAll(async () => {
      // A long first restart delay, so the time the port is closed can be observed.
      a = await startTestAuthz(etcd, redis, keys, {}, { checkWorker: { restartDelayMs: 3_000 } });
    }, 120_000);

    afterAll(async () => {
      if (!stopped) await a?.stop();
    });

    it('fails closed, counts it, and restarts it on the same port', async () => {
      const token = okHeaders(await a.check(outbound('checkout', 'orders')))['authorization'];
      const port = a.authz.grpcPort;
      const restarts = await counterValue(a.authz, 'trellis_authz_check_worker_restarts_total');
      await a.authz.checkWorker!.thread!.terminate();
      expect(a.authz.checkWorker!.serving).toBe(false);
      expect((await fetch(`http://127.0.0.1:${a.authz.httpPort}/readyz`)).status).toBe(503);
      // No OK while no worker serves: the port is closed (Envoy's ext_authz, failure_mode_allow off, denies).
      await expect(a.check(outbound('checkout', 'orders'))).rejects.toMatchObject({
        code: status.UNAVAILABLE,
      } satisfies Partial<ServiceError>);
      expect(await counterValue(a.authz, 'trellis_authz_check_worker_restarts_total')).toBe(restarts + 1);

      await eventually('authz ready', async () => (await fetch(`http://127.0.0.1:${a.authz.httpPort}/readyz`)).status === 200, 60_000, {
        intervalMs: 100,
      });
      expect(a.authz.checkWorker!.grpcPort).toBe(port);
      // The new worker has the registry and asks the main thread for the token it lost with its memory.
      await eventually(
        'a check answered',
        async () => (await a.check(outbound('checkout', 'orders')).catch(() => undefined)) !== undefined,
        60_000,
        {
          intervalMs: 100,
        },
      );
      expect(okHeaders(await a.check(outbound('checkout', 'orders')))['authorization']).toBe(token);
      expect(deniedReason(await a.check(outbound('checkout', 'payments'))).reason).toBe('undeclared');
    });

    it('drains and ends the worker on close', async () => {
      const thread = a.authz.checkWorker!.thread!;
      const exited = new Promise<number>((resolve) => thread.once('exit', resolve));
      stopped = true;
      await a.stop();
      await exited;
      expect(a.authz.checkWorker!.thread).toBeUndefined();
      expect(await counterValue(a.authz, 'trellis_authz_check_worker_restarts_total')).toBe(1);
    });
  });
});

async function waitForOk(a: StartedAuthz, source: string, destination: string) {
  let last: Awaited<ReturnType<StartedAuthz['check']>> | undefined;
  await eventually(
    `${source} → ${destination} allowed`,
    async () => {
      last = await a.check(outbound(source, destination));
      return last.status?.code === status.OK;
    },
    60_000,
    { intervalMs: 100 },
  );
  return last!;
}

function deniedOrUndefined(response: Awaited<ReturnType<StartedAuthz['check']>>): string | undefined {
  return response.status?.code === status.OK ? undefined : deniedReason(response).reason;
}
