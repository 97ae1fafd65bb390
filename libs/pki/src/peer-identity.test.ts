import { identityOfPeerCertificate, serviceOfPeerCertificate, spiffeServerIdentityCheck } from './peer-identity';

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

describe('identityOfPeerCertificate', () => {
  const td = 'mesh.example';
  it('tells a service from a Trellis component', () => {
    expect(identityOfPeerCertificate({ subjectaltname: 'URI:spiffe://mesh.example/svc/authz' }, td)).toEqual({
      kind: 'service',
      service: 'authz',
    });
    expect(identityOfPeerCertificate({ subjectaltname: 'URI:spiffe://mesh.example/trellis/edge' }, td)).toEqual({
      kind: 'component',
      component: 'edge',
    });
    expect(identityOfPeerCertificate({ subjectaltname: 'URI:spiffe://mesh.example/trellis/authz' }, td)).toEqual({
      kind: 'component',
      component: 'authz',
    });
  });
  it('knows nobody for an unknown component, another domain or two identities', () => {
    for (const san of [
      'URI:spiffe://mesh.example/trellis/registry',
      'URI:spiffe://evil.example/trellis/edge',
      'URI:spiffe://mesh.example/trellis/edge, URI:spiffe://mesh.example/svc/a',
      'DNS:edge',
    ])
      expect(identityOfPeerCertificate({ subjectaltname: san }, td)).toEqual({ kind: 'unknown' });
    expect(identityOfPeerCertificate(undefined, td)).toEqual({ kind: 'unknown' });
  });
});

describe('spiffeServerIdentityCheck', () => {
  const check = spiffeServerIdentityCheck('spiffe://mesh.example/trellis/authz');
  it('accepts only the pinned SPIFFE ID, whatever the host name', () => {
    expect(check('10.0.0.7', { subjectaltname: 'URI:spiffe://mesh.example/trellis/authz' })).toBeUndefined();
    expect(check('authz', { subjectaltname: 'DNS:authz, URI:spiffe://mesh.example/svc/authz' })).toBeInstanceOf(Error);
    expect(check('authz', { subjectaltname: 'DNS:authz' })).toBeInstanceOf(Error);
    expect(check('authz', { subjectaltname: 'URI:spiffe://mesh.example/trellis/authz, URI:spiffe://mesh.example/svc/a' })).toBeInstanceOf(
      Error,
    );
  });
});
