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
    expect(lean.http()).toEqual({
      host: full.attributes!.request!.http!.host,
      path: full.attributes!.request!.http!.path,
      headers: full.attributes!.request!.http!.headers,
    });
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

describe('decodeCheckAttributes on hostile bytes', () => {
  it('never throws on truncated or random input', () => {
    const valid = Buffer.from(
      CheckRequest.encode(checkRequest({ context: { 'trellis.direction': 'inbound' }, headers: { authorization: 'Bearer x' } })).finish(),
    );
    for (let cut = 0; cut < valid.length; cut++) {
      const lean = decodeCheckAttributes(valid.subarray(0, cut));
      expect(() => lean.http()).not.toThrow();
    }
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    for (let i = 0; i < 500; i++) {
      const bytes = Buffer.from(Array.from({ length: 1 + (i % 64) }, random));
      expect(() => decodeCheckAttributes(bytes).http()).not.toThrow();
    }
  });
});
