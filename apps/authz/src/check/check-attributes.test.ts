import { CheckRequest } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { checkRequest } from '../../test/support/harness';
import { decodeCheckAttributes } from './check-attributes';

describe('decodeCheckAttributes', () => {
  it('reads the same context extensions, host, path and headers as the generated decoder', () => {
    const request = checkRequest({
      context: { 'trellis.direction': 'edge', 'trellis.source': 'a' },
      headers: { authorization: 'Bearer x', cookie: 'CF_Authorization=y', 'x-empty': '' },
      host: 'shop.example.com:8443',
      path: '/admin?q=1',
    });
    request.attributes!.source = { address: undefined, service: 'spoofed', labels: { a: 'b' }, principal: 'p', certificate: '' };
    const bytes = CheckRequest.encode(request).finish();
    const full = CheckRequest.decode(bytes);
    const lean = decodeCheckAttributes(bytes);
    expect(lean.contextExtensions).toEqual(full.attributes!.contextExtensions);
    expect(lean.http()).toEqual({ host: full.attributes!.request!.http!.host, path: full.attributes!.request!.http!.path, headers: full.attributes!.request!.http!.headers });
  });

  it('has no HTTP attributes and no context for an empty request', () => {
    const lean = decodeCheckAttributes(new Uint8Array());
    expect(lean.contextExtensions).toEqual({});
    expect(lean.http()).toBeUndefined();
  });

  it('marks bytes that are not protobuf as malformed instead of throwing', () => {
    const lean = decodeCheckAttributes(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    expect(lean.malformed).toBe(true);
    expect(lean.http()).toBeUndefined();
    expect(decodeCheckAttributes(CheckRequest.encode(checkRequest({})).finish()).malformed).toBe(false);
  });
});
