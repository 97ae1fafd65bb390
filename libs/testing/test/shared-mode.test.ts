// The TRELLIS_TEST_* modes, exercised against servers this suite starts itself:
// suites sharing a server get their own prefix / database and clean up after themselves.
import { startEtcd, startRedis, type TestEtcd, type TestRedis } from '../src';
import { redisCommands } from '../src/resp';

let etcdServer: TestEtcd;
let redisServer: TestRedis;

beforeAll(async () => {
  [etcdServer, redisServer] = await Promise.all([startEtcd(), startRedis()]);
});
afterAll(async () => {
  delete process.env['TRELLIS_TEST_ETCD_ENDPOINTS'];
  delete process.env['TRELLIS_TEST_REDIS_URL'];
  await Promise.all([etcdServer?.close(), redisServer?.close()]);
});

it('shared etcd: a prefix per call, deleted on close, no restarts', async () => {
  process.env['TRELLIS_TEST_ETCD_ENDPOINTS'] = etcdServer.endpoints.join(',');
  const [a, b] = await Promise.all([startEtcd(), startEtcd()]);
  expect(a.endpoints).toEqual(etcdServer.endpoints);
  expect(a.prefix).not.toBe(b.prefix);
  expect(a.canRestart).toBe(false);
  await expect(a.stop()).rejects.toThrow(/canRestart/);

  await a.client().put(`${a.prefix}k`).value('a');
  await b.client().put(`${b.prefix}k`).value('b');
  await a.close();
  const admin = etcdServer.client();
  expect(await admin.get(`${a.prefix}k`).string()).toBeNull();
  expect(await admin.get(`${b.prefix}k`).string()).toBe('b');
  await b.close();
});

it('shared Redis: a claimed database per call, flushed at start and close', async () => {
  const server = redisServer.url.replace(/\/\d+$/, '');
  await redisCommands(server, [
    ['SELECT', '3'],
    ['SET', 'leftover', '1'],
  ]);
  process.env['TRELLIS_TEST_REDIS_URL'] = server;
  const suites = await Promise.all([startRedis(), startRedis(), startRedis()]);
  const dbs = suites.map((s) => s.db);
  expect(new Set(dbs).size).toBe(3);
  for (const s of suites) {
    expect(s.db).toBeGreaterThanOrEqual(1);
    expect(s.url).toBe(`${server}/${s.db}`);
    expect(s.canRestart).toBe(false);
    expect(await redisCommands(server, [['SELECT', String(s.db)], ['DBSIZE']])).toEqual(['OK', 0]);
  }
  await redisCommands(server, [
    ['SELECT', String(dbs[0])],
    ['SET', 'k', 'v'],
  ]);
  await Promise.all(suites.map((s) => s.close()));
  expect(await redisCommands(server, [['SELECT', String(dbs[0])], ['DBSIZE']])).toEqual(['OK', 0]);
  expect(
    await redisCommands(server, [
      ['SELECT', '0'],
      ['KEYS', 'trellis-test:*'],
    ]),
  ).toEqual(['OK', []]);
});
