// The token client against a local stand-in for authz's token endpoint that
// can be switched off: an outage inside the renewal window costs no call while
// the held token is valid, and renewals run one at a time in the background.
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { UnsecuredJWT } from 'jose';
import { MESH_TOKEN_RENEW_BEFORE_SECONDS } from '@trellis/mesh-contracts';
import { generateRootCa, generateWorkloadKey, MeshCa } from '@trellis/pki';
import { eventually } from '@trellis/testing';
import { certificateFilesIn, writeCertificateFiles, type CertificateMaterial } from './certificate-files';
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
  await eventually('the background renewal failed', () => errors.length >= 1);
  await settle();
  expect(errors.length).toBeLessThanOrEqual(2); // retried after a pause, not on every call
  up = true;
  clock += 3_000;
  expect(await c.getToken('b')).toBe(first); // still the held one: the renewal runs in the background
  let renewed = first;
  // Background renewals are real HTTP requests: on a loaded machine they take their time.
  await eventually('the renewed token held', async () => {
    renewed = await c.getToken('b');
    return renewed !== first && issued === 2;
  });
  expect(renewed).not.toBe(first);
});

it('renews with one request however many calls ask at once', async () => {
  const c = client();
  await c.getToken('b');
  clock += (TTL - MESH_TOKEN_RENEW_BEFORE_SECONDS + 1) * 1000;
  const before = issued;
  await Promise.all(Array.from({ length: 50 }, () => c.getToken('b')));
  await eventually('the renewal answered', () => issued - before >= 1);
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

describe('with a workload certificate (mTLS)', () => {
  const trustDomain = 'mesh.example';
  let dir: string;
  let mtls: HttpsServer;
  let mtlsUrl: string;
  let ca: MeshCa;
  const seen: string[] = [];

  async function certificateFor(service: string): Promise<CertificateMaterial> {
    const key = await generateWorkloadKey(service);
    const issued = await ca.issue(key.csrPem, service);
    return { certificateChainPem: issued.chainPem, privateKeyPem: key.keyPem, trustBundlePem: issued.trustBundlePem };
  }

  async function serve(identity: 'authz' | 'a service'): Promise<void> {
    const key = await generateWorkloadKey('authz');
    const issued = identity === 'authz' ? await ca.issueComponent(key.csrPem, 'authz') : await ca.issue(key.csrPem, 'authz');
    mtls = createHttpsServer(
      { cert: issued.chainPem, key: key.keyPem, ca: issued.trustBundlePem, requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        seen.push(`${peer.subjectaltname} ${peer.serialNumber}`);
        const iat = Math.floor(clock / 1000);
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            token: new UnsecuredJWT({})
              .setIssuedAt(iat)
              .setExpirationTime(iat + TTL)
              .encode(),
          }),
        );
      },
    );
    mtls.listen(0, '127.0.0.1');
    await once(mtls, 'listening');
    mtlsUrl = `https://127.0.0.1:${(mtls.address() as AddressInfo).port}`;
  }

  beforeAll(async () => {
    const root = await generateRootCa({ commonName: 'test root' });
    ca = await MeshCa.load({ certificatePem: root.certificatePem, keyPem: root.keyPem }, { trustDomain, lifetimeSeconds: 3600 });
    dir = await mkdtemp(join(tmpdir(), 'sdk-token-mtls-'));
  });
  afterEach(() => new Promise((r) => (mtls ? mtls.close(r) : r(undefined))));
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("presents the agent's certificate files, re-read for every request so a renewal applies at once", async () => {
    await serve('authz');
    const files = await writeCertificateFiles(dir, await certificateFor('a'));
    const c = new MeshTokenClient({ authzUrl: mtlsUrl, service: 'a', certificates: files, now: () => clock });
    await c.getToken('b');
    await writeCertificateFiles(dir, await certificateFor('a')); // the agent renewed
    await c.getToken('c');
    expect(seen).toHaveLength(2);
    expect(seen.every((s) => s.startsWith('URI:spiffe://mesh.example/svc/a '))).toBe(true);
    expect(seen[0]).not.toBe(seen[1]); // two serial numbers: the renewed certificate was presented
  });

  it("refuses a server that is not authz (a certificate of the mesh's CA for a service, not spiffe://<td>/trellis/authz)", async () => {
    await serve('a service');
    const files = await writeCertificateFiles(dir, await certificateFor('a'));
    const c = new MeshTokenClient({ authzUrl: mtlsUrl, service: 'a', certificates: files, now: () => clock });
    await expect(c.getToken('b')).rejects.toThrow(/trellis\/authz/);
  });

  it('refuses to present a certificate over plain HTTP, and needs exactly one way to prove the service', () => {
    const files = certificateFilesIn(dir);
    expect(() => new MeshTokenClient({ authzUrl: 'http://authz:8181', service: 'a', certificates: files })).toThrow(/https/);
    expect(() => new MeshTokenClient({ authzUrl: 'https://authz:8443', service: 'a' })).toThrow(/either/);
    expect(() => new MeshTokenClient({ authzUrl: 'https://authz:8443', service: 'a', certificates: files, secret: 's' })).toThrow(/either/);
  });
});
