import { status } from '@grpc/grpc-js';
import { CheckResponse } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { allow, DENY_REASONS, forbid, toCheckResponse, unavailable } from './decision';

describe('toCheckResponse', () => {
  it('allows with OK and headers that overwrite what the client sent', () => {
    const response = toCheckResponse(allow({ authorization: 'Bearer t' }, ['x-trellis-access-email']));
    // Round-trip through the wire format: what Envoy receives.
    const decoded = CheckResponse.decode(CheckResponse.encode(response).finish());
    expect(decoded.status?.code).toBe(status.OK);
    expect(decoded.httpResponse?.$case).toBe('okResponse');
    const ok = decoded.httpResponse?.$case === 'okResponse' ? decoded.httpResponse.value : undefined;
    expect(ok?.headers.map((h) => [h.header?.key, h.header?.value, h.appendAction])).toEqual([['authorization', 'Bearer t', 2]]);
    expect(ok?.headersToRemove).toEqual(['x-trellis-access-email']);
  });

  it('denies with a non-OK status and a denied_response naming the reason', () => {
    const decoded = CheckResponse.decode(CheckResponse.encode(toCheckResponse(forbid('undeclared', 'a has not declared b'))).finish());
    expect(decoded.status).toMatchObject({ code: status.PERMISSION_DENIED, message: 'undeclared: a has not declared b' });
    expect(decoded.httpResponse?.$case).toBe('deniedResponse');
    const denied = decoded.httpResponse?.$case === 'deniedResponse' ? decoded.httpResponse.value : undefined;
    expect(denied?.status?.code).toBe(403);
    expect(denied?.headers.find((h) => h.header?.key === 'x-trellis-authz-reason')?.header?.value).toBe('undeclared');
    expect(JSON.parse(denied!.body)).toEqual({ error: 'forbidden', reason: 'undeclared', message: 'a has not declared b' });
  });

  it('fails closed with 503 when authz cannot decide', () => {
    const response = toCheckResponse(unavailable('not-ready', 'no snapshot'));
    expect(response.status?.code).toBe(status.UNAVAILABLE);
    expect(response.httpResponse?.$case === 'deniedResponse' && response.httpResponse.value.status?.code).toBe(503);
  });
});

describe('deny reasons', () => {
  it('are a closed set of metric-label-safe names, each once', () => {
    expect(new Set(DENY_REASONS).size).toBe(DENY_REASONS.length);
    for (const reason of DENY_REASONS) expect(reason).toMatch(/^[a-z][a-z-]*[a-z]$/);
    // Bounded: the label's cardinality cannot grow with traffic.
    expect(DENY_REASONS.length).toBeLessThan(64);
    expect(DENY_REASONS).toEqual(expect.arrayContaining(['undeclared', 'token-expired', 'access-certs-unavailable']));
  });
});
