import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createTestPki, type TestPki } from './test-pki';

describe('createTestPki', () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = createTestPki();
  });
  afterAll(() => pki.remove());

  const certificate = (bytes: Buffer) => new X509Certificate(bytes);

  it('issues a server certificate for 127.0.0.1 and localhost, signed by its CA, with the key on disk too', () => {
    const ca = certificate(pki.ca);
    const server = certificate(pki.server.cert);
    expect(ca.ca).toBe(true);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkPrivateKey(createPrivateKey(pki.server.key))).toBe(true);
    expect(readFileSync(pki.server.certFile)).toEqual(pki.server.cert);
    expect(readFileSync(pki.caFile)).toEqual(pki.ca);
  });

  it("issues a client certificate naming the service's SPIFFE ID, once per service", () => {
    const a = pki.client('a');
    const client = certificate(a.cert);
    expect(client.subjectAltName).toBe('URI:spiffe://trellis.local/svc/a');
    expect(client.subject).toBe('CN=a');
    expect(client.verify(certificate(pki.ca).publicKey)).toBe(true);
    expect(client.checkPrivateKey(createPrivateKey(a.key))).toBe(true);
    expect(pki.client('a')).toBe(a);
    expect(certificate(pki.client('b').cert).subjectAltName).toBe('URI:spiffe://trellis.local/svc/b');
  });

  it('refuses a name that is not a service name, and remove() deletes every file', () => {
    expect(() => pki.client('../ca')).toThrow(/not a service name/);
    const other = createTestPki();
    other.remove();
    expect(existsSync(other.dir)).toBe(false);
  });
});
