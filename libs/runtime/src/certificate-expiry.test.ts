import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestPki, findBinary, type TestPki } from '@trellis/testing';
import { Registry } from 'prom-client';
import { certificateNotAfterSeconds, registerCertificateExpiryGauge } from './certificate-expiry';

describe('certificate expiry', () => {
  let pki: TestPki;
  const openssl = () => findBinary('openssl')!;
  /** openssl's own reading of a certificate file's notAfter, as Unix seconds. */
  const opensslNotAfter = (file: string) =>
    Date.parse(
      execFileSync(openssl(), ['x509', '-noout', '-enddate', '-in', file], { encoding: 'utf8' })
        .trim()
        .replace(/^notAfter=/, ''),
    ) / 1000;

  beforeAll(() => {
    pki = createTestPki();
    // A certificate valid for 400 days, beside the PKI's one-day ones, so a chain's leaf and CA differ.
    execFileSync(
      openssl(),
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '400',
        '-subj',
        '/CN=long',
        '-keyout',
        'long.key',
        '-out',
        'long.crt',
      ],
      { cwd: pki.dir, stdio: 'pipe' },
    );
  });
  afterAll(() => pki.remove());

  it("reads a certificate's not-after as Unix seconds, as openssl reads it", () => {
    const client = pki.client('registry');
    const notAfter = certificateNotAfterSeconds(client.cert, 'TRELLIS_ETCD_CERT_FILE');
    expect(notAfter).toBe(opensslNotAfter(client.certFile));
    // The test PKI issues for one day.
    expect(notAfter).toBeGreaterThan(Date.now() / 1000 + 86_400 - 3_600);
    expect(notAfter).toBeLessThanOrEqual(Date.now() / 1000 + 86_400);
  });

  it("takes a chain's first certificate (the leaf), not a later CA's", () => {
    const long = readFileSync(join(pki.dir, 'long.crt'));
    const chain = Buffer.concat([long, pki.ca]);
    expect(certificateNotAfterSeconds(chain, 'chain')).toBe(opensslNotAfter(join(pki.dir, 'long.crt')));
    expect(certificateNotAfterSeconds(chain, 'chain')).toBeGreaterThan(Date.now() / 1000 + 399 * 86_400);
  });

  it('refuses what holds no certificate, naming its source', () => {
    expect(() => certificateNotAfterSeconds(pki.client('registry').key, 'TRELLIS_ETCD_CERT_FILE')).toThrow(
      /^TRELLIS_ETCD_CERT_FILE: not a PEM certificate/,
    );
    expect(() => certificateNotAfterSeconds('', 'TRELLIS_ETCD_CERT_FILE')).toThrow(/^TRELLIS_ETCD_CERT_FILE: not a PEM certificate/);
  });

  it('exports the not-after as a gauge', async () => {
    const registry = new Registry();
    const client = pki.client('authz');
    registerCertificateExpiryGauge(
      registry,
      { name: 'trellis_authz_etcd_client_cert_expiry_timestamp_seconds', help: 'When it expires' },
      client.cert,
      'TRELLIS_ETCD_CERT_FILE',
    );
    const text = await registry.metrics();
    expect(text).toContain('# TYPE trellis_authz_etcd_client_cert_expiry_timestamp_seconds gauge');
    expect(text).toContain(`trellis_authz_etcd_client_cert_expiry_timestamp_seconds ${opensslNotAfter(client.certFile)}\n`);
  });
});
