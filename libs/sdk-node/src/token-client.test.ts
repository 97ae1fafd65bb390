// The token client against a local stand-in for authz's token endpoint that
// can be switched off: an outage inside the renewal window costs no call while
// the held token is valid, and renewals run one at a time in the background.
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { UnsecuredJWT } from 'jose';
import { MESH_TOKEN_RENEW_BEFORE_SECONDS } from '@trellis/mesh-contracts';
import { MeshTokenClient } from './token-client';

let server: Server;
let url: string;
let up = true;
let issued = 0;
let clock = 1_700_000_000_000;
const TTL = 900;

beforeAll(async () => {
  server = createServer((_req, res) => {
    if (!up) return void res.writeHead(503).end('down');
    issued++;
    const iat = Math.floor(clock / 1000);
    const token = new UnsecuredJWT({ n: issued })
      .setIssuedAt(iat)
      .setExpirationTime(iat + TTL)
      .encode();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise((r) => server.close(r)));
beforeEach(() => {
  up = true;
  issued = 0;
});

const client = (errors: Error[] = []) =>
  new MeshTokenClient({ authzUrl: url, service: 'a', secret: 's', now: () => clock, onRenewError: (_a, e) => errors.push(e) });
const settle = () => new Promise((r) => setTimeout(r, 50));

it('keeps using the held token through an authz outage inside the renewal window, and renews once authz is back', async () => {
  const errors: Error[] = [];
  const c = client(errors);
  const first = await c.getToken('b');
  clock += (TTL - MESH_TOKEN_RENEW_BEFORE_SECONDS + 1) * 1000; // inside the renewal window
  up = false;
  for (let i = 0; i < 20; i++) expect(await c.getToken('b')).toBe(first);
  await settle();
  expect(errors.length).toBeGreaterThanOrEqual(1);
  expect(errors.length).toBeLessThanOrEqual(2); // retried after a pause, not on every call
  up = true;
  clock += 3_000;
  expect(await c.getToken('b')).toBe(first); // still the held one: the renewal runs in the background
  await settle();
  const renewed = await c.getToken('b');
  expect(renewed).not.toBe(first);
});

it('renews with one request however many calls ask at once', async () => {
  const c = client();
  await c.getToken('b');
  clock += (TTL - MESH_TOKEN_RENEW_BEFORE_SECONDS + 1) * 1000;
  const before = issued;
  await Promise.all(Array.from({ length: 50 }, () => c.getToken('b')));
  await settle();
  expect(issued - before).toBe(1);
});

it('fails a call only when no valid token is held and authz cannot be reached', async () => {
  const c = client();
  await c.getToken('b');
  clock += TTL * 1000; // expired
  up = false;
  await expect(c.getToken('b')).rejects.toThrow(/503/);
});
