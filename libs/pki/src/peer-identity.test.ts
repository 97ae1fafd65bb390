import { serviceOfPeerCertificate } from './peer-identity';

describe('serviceOfPeerCertificate', () => {
  it('takes the service from the one SPIFFE ID of the trust domain', () => {
    expect(serviceOfPeerCertificate({ subjectaltname: 'URI:spiffe://mesh.example/svc/service-a' }, 'mesh.example')).toBe('service-a');
    expect(serviceOfPeerCertificate({ subjectaltname: 'DNS:x, URI:spiffe://mesh.example/svc/b' }, 'mesh.example')).toBe('b');
  });
  it('names nothing for another domain, another path, two identities or none', () => {
    expect(serviceOfPeerCertificate({ subjectaltname: 'URI:spiffe://evil.example/svc/a' }, 'mesh.example')).toBeUndefined();
    expect(serviceOfPeerCertificate({ subjectaltname: 'URI:spiffe://mesh.example/ns/x/sa/a' }, 'mesh.example')).toBeUndefined();
    expect(serviceOfPeerCertificate({ subjectaltname: 'URI:spiffe://mesh.example/svc/a/../b' }, 'mesh.example')).toBeUndefined();
    expect(
      serviceOfPeerCertificate({ subjectaltname: 'URI:spiffe://mesh.example/svc/a, URI:spiffe://mesh.example/svc/b' }, 'mesh.example'),
    ).toBeUndefined();
    expect(serviceOfPeerCertificate({ subjectaltname: 'DNS:a' }, 'mesh.example')).toBeUndefined();
    expect(serviceOfPeerCertificate(undefined, 'mesh.example')).toBeUndefined();
  });
});
