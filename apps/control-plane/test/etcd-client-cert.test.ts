// The etcd client certificate is read once, at start (etcd3 keeps it for the client's life): /metrics tells
// when the one in use expires, so an alert (TrellisEtcdClientCertificateExpiring) can ask for the restart
// that takes a renewed file. Without a client certificate there is no series (an unset gauge would read 0).
import { X509Certificate } from 'node:crypto';
import { createTestPki, startEtcd, type TestEtcd, type TestPki } from '@trellis/testing';
import { startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';

jest.setTimeout(120_000);

let etcd: TestEtcd;
let pki: TestPki;
const harnesses: ControlPlaneHarness[] = [];
beforeAll(async () => {
  [etcd, pki] = await Promise.all([startEtcd(), createTestPki()]);
});
afterAll(async () => {
  for (const h of harnesses) await h.stop();
  await etcd?.close();
  pki?.remove();
});

const expirySeries = async (h: ControlPlaneHarness) =>
  (await (await fetch(`${h.httpUrl}/metrics`)).text())
    .split('\n')
    .filter((line) => line.startsWith('trellis_control_plane_etcd_client_cert_expiry_timestamp_seconds'));

it('exports the not-after of the certificate it presents to etcd, and no series without one', async () => {
  const cert = pki.client('control-plane').cert;
  const withCert = await startControlPlaneHarness({ TRELLIS_CONTROL_PLANE_ID: 'cp-cert' }, undefined, etcd, { etcdClientCert: cert });
  harnesses.push(withCert);
  const notAfter = Date.parse(new X509Certificate(cert).validTo) / 1000;
  expect(await expirySeries(withCert)).toEqual([`trellis_control_plane_etcd_client_cert_expiry_timestamp_seconds ${notAfter}`]);

  const without = await startControlPlaneHarness({ TRELLIS_CONTROL_PLANE_ID: 'cp-no-cert' }, undefined, etcd);
  harnesses.push(without);
  expect(await expirySeries(without)).toEqual([]);
});
