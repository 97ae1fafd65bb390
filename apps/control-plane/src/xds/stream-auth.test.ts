import type { PeerCertificate } from 'node:tls';
import { Metadata } from '@grpc/grpc-js';
import { createStreamAuthenticator } from './stream-auth';

// The TLS layer has verified these chains; what is left is which service a certificate proves.
const cert = (subjectaltname: string | undefined, CN = 'b') => ({ subjectaltname, subject: { CN } }) as unknown as PeerCertificate;
const authenticate = createStreamAuthenticator({
  allowInsecure: false,
  keys: () => ({ authzKeys: new Map(), meshSettings: { tokenIssuer: 'trellis', clockSkewSeconds: 30, trustDomain: 'mesh.example' } }),
});

describe('xDS stream authentication by workload certificate', () => {
  it('admits the certificate whose SPIFFE ID names node.cluster', async () => {
    await expect(authenticate(new Metadata(), 'b', cert('URI:spiffe://mesh.example/svc/b'))).resolves.toMatchObject({
      admitted: true,
      method: 'certificate',
    });
  });

  it("refuses another service's certificate, another trust domain, and a subject CN without a SPIFFE ID", async () => {
    for (const peer of [
      cert('URI:spiffe://mesh.example/svc/a'),
      cert('URI:spiffe://evil.example/svc/b'),
      cert(undefined, 'b'),
      cert('DNS:b', 'b'),
    ]) {
      await expect(authenticate(new Metadata(), 'b', peer)).resolves.toMatchObject({ admitted: false });
    }
  });

  it('refuses a process without any credential in the default configuration', async () => {
    await expect(authenticate(new Metadata(), 'b')).resolves.toMatchObject({ admitted: false });
  });
});
