// JwksCache against a local JWKS endpoint that can be switched off: keys stay
// in use when a refresh fails (stale-while-error), a new kid is fetched once.
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, jwtVerify, type JWK } from 'jose';
import { JwksCache } from './jwks-cache';

let server: Server;
let url: URL;
let up = true;
let fetches = 0;
const published: JWK[] = [];

beforeAll(async () => {
  server = createServer((_req, res) => {
    fetches++;
    if (!up) return void res.writeHead(503).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: published }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`);
});
afterAll(() => new Promise((r) => server.close(r)));

async function key(kid: string) {
  const pair = await generateKeyPair('RS256');
  published.push({ ...(await exportJWK(pair.publicKey)), kid, alg: 'RS256', use: 'sig' });
  return (claims = {}) => new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid }).setExpirationTime('5m').sign(pair.privateKey);
}

it('keeps verifying with the keys it holds while refreshes fail, and picks up a new kid', async () => {
  let clock = 0;
  const errors: Error[] = [];
  const cache = new JwksCache(url, { refreshIntervalMs: 1_000, cooldownMs: 100, now: () => clock, onRefreshError: (e) => errors.push(e) });
  const signK1 = await key('k1');
  await expect(jwtVerify(await signK1(), cache.getKey)).resolves.toBeDefined();

  up = false;
  clock += 10_000; // stale: a background refresh is attempted, and fails
  for (let i = 0; i < 5; i++) await expect(jwtVerify(await signK1(), cache.getKey)).resolves.toBeDefined();
  await new Promise((r) => setTimeout(r, 50));
  expect(errors.length).toBeGreaterThanOrEqual(1);

  up = true;
  const signK2 = await key('k2');
  clock += 200; // past the cooldown: an unknown kid triggers one fetch
  await expect(jwtVerify(await signK2(), cache.getKey)).resolves.toBeDefined();
  const before = fetches;
  await expect(jwtVerify(await signK2(), cache.getKey)).resolves.toBeDefined();
  expect(fetches).toBe(before);
});
