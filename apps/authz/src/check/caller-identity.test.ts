import type { PeerIdentity } from '@trellis/pki';
import { authorizeCaller } from './caller-identity';

const service = (name: string): PeerIdentity => ({ kind: 'service', service: name });
const edgeProxy: PeerIdentity = { kind: 'component', component: 'edge' };
const context = (direction: string, source: string | undefined, destination: string) => ({
  'trellis.direction': direction,
  ...(source === undefined ? {} : { 'trellis.source': source }),
  'trellis.destination': destination,
});
const reasonOf = (result: ReturnType<typeof authorizeCaller>) => (result.ok ? 'ok' : result.reason);

describe('authorizeCaller', () => {
  it("outbound: the certificate's service is the source; a trellis.source naming another is an impersonation", () => {
    expect(authorizeCaller('outbound', context('outbound', 'a', 'b'), service('a'), false)).toEqual({
      ok: true,
      contextExtensions: context('outbound', 'a', 'b'),
    });
    expect(authorizeCaller('outbound', context('outbound', undefined, 'b'), service('a'), false)).toEqual({
      ok: true,
      contextExtensions: { 'trellis.direction': 'outbound', 'trellis.destination': 'b', 'trellis.source': 'a' },
    });
    expect(reasonOf(authorizeCaller('outbound', context('outbound', 'a', 'b'), service('c'), false))).toBe('source-mismatch');
    expect(reasonOf(authorizeCaller('outbound', context('outbound', 'a', 'b'), edgeProxy, false))).toBe('peer-not-a-service');
  });

  it('no verified certificate: refused, unless insecure callers are allowed (local development)', () => {
    const result = authorizeCaller('outbound', context('outbound', 'a', 'b'), undefined, false);
    expect(reasonOf(result)).toBe('peer-unauthenticated');
    expect(!result.ok && result.decision.allow === false && result.decision.httpStatus).toBe(401);
    expect(reasonOf(authorizeCaller('outbound', context('outbound', 'a', 'b'), undefined, true))).toBe('ok');
    // Allowing insecure callers never lets a certified caller claim another source.
    expect(reasonOf(authorizeCaller('outbound', context('outbound', 'a', 'b'), service('c'), true))).toBe('source-mismatch');
  });

  it('a certificate that names nobody of this mesh is refused in every direction', () => {
    for (const direction of ['outbound', 'inbound', 'edge'] as const)
      expect(reasonOf(authorizeCaller(direction, context(direction, 'a', 'b'), { kind: 'unknown' }, true))).toBe('peer-unknown-identity');
  });

  it("inbound: only the destination's own sidecar", () => {
    expect(reasonOf(authorizeCaller('inbound', context('inbound', undefined, 'b'), service('b'), false))).toBe('ok');
    expect(reasonOf(authorizeCaller('inbound', context('inbound', undefined, 'b'), service('a'), false))).toBe('destination-mismatch');
    expect(reasonOf(authorizeCaller('inbound', context('inbound', undefined, 'b'), edgeProxy, false))).toBe('peer-not-a-service');
  });

  it("edge: the edge proxy, or a public service's own sidecar", () => {
    expect(reasonOf(authorizeCaller('edge', context('edge', undefined, 'shop'), edgeProxy, false))).toBe('ok');
    expect(reasonOf(authorizeCaller('edge', context('edge', undefined, 'shop'), service('shop'), false))).toBe('ok');
    expect(reasonOf(authorizeCaller('edge', context('edge', undefined, 'shop'), service('a'), false))).toBe('edge-peer-not-allowed');
    expect(reasonOf(authorizeCaller('edge', context('edge', undefined, 'shop'), { kind: 'component', component: 'authz' }, false))).toBe(
      'edge-peer-not-allowed',
    );
  });
});
