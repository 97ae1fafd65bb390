// The etcd client certificate is read once, at start (etcd3 keeps it for the client's life): /metrics tells
// when the one in use expires, so an alert (TrellisEtcdClientCertificateExpiring) can ask for the restart
// that takes a renewed file. Without a client certificate there is no series (an unset gauge would read 0).
import { X509Certificate } from 'node:crypto';
import { createTestPki, startEtcd, startRedis, type TestEtcd, type TestPki, type TestRedis } from '@trellis/testing';
import { KeyDir, startTestAuthz, type StartedAuthz } from './support/harness';

jest.setTimeout(120_000);

let etcd: TestEtcd;
let redis: TestRedis;
let keys: KeyDir;
let pki: TestPki;
const started: StartedAuthz[] = [];
beforeAll(async () => {
  pki = createTestPki();
  [etcd, redis, keys] = await Promise.all([startEtcd(), startRedis(), KeyDir.create()]);
  await keys.addKey('first');
});
afterAll(async () => {
  for (const s of started) await s.stop();
  await Promise.all([etcd?.close(), redis?.close(), keys?.remove()]);
  pki?.remove();
});

const expirySeries = async (s: StartedAuthz) =>
  (await (await fetch(`http://127.0.0.1:${s.authz.httpPort}/metrics`)).text())
    .split('\n')
    .filter((line) => line.startsWith('trellis_authz_etcd_client_cert_expiry_timestamp_seconds'));

it('exports the not-after of the certificate it presents to etcd, and no series without one', async () => {
  const cert = pki.client('authz').cert;
  const withCert = await startTestAuthz(etcd, redis, keys, {}, { etcdClientCert: cert });
  started.push(withCert);
  const notAfter = Date.parse(new X509Certificate(cert).validTo) / 1000;
  expect(await expirySeries(withCert)).toEqual([`trellis_authz_etcd_client_cert_expiry_timestamp_seconds ${notAfter}`]);

  const without = await startTestAuthz(etcd, redis, keys);
  started.push(without);
  expect(await expirySeries(without)).toEqual([]);
});
