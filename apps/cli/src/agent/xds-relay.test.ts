import { DeltaDiscoveryRequest, DiscoveryRequest } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { isLocalPeer, parseRelayAddress, refusal } from './xds-relay';

const sotw = (cluster?: string) =>
  Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromPartial(cluster === undefined ? {} : { node: { id: 'n', cluster } })).finish());
const delta = (cluster?: string) =>
  Buffer.from(
    DeltaDiscoveryRequest.encode(DeltaDiscoveryRequest.fromPartial(cluster === undefined ? {} : { node: { id: 'n', cluster } })).finish(),
  );

describe('the xDS relay', () => {
  it('listens on loopback or a Unix socket only', () => {
    expect(parseRelayAddress('127.0.0.1:15010')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 15010 });
    expect(parseRelayAddress('[::1]:0')).toEqual({ kind: 'tcp', host: '[::1]', port: 0 });
    expect(parseRelayAddress('unix:/run/trellis/xds.sock')).toEqual({ kind: 'unix', path: '/run/trellis/xds.sock' });
    for (const bad of ['0.0.0.0:15010', '10.0.0.5:15010', 'relay.example:15010', 'unix:relative.sock', '127.0.0.1:99999'])
      expect(() => parseRelayAddress(bad)).toThrow();
  });

  it('serves loopback peers only on TCP', () => {
    expect(isLocalPeer('127.0.0.1:53211')).toBe(true);
    expect(isLocalPeer('[::1]:53211')).toBe(true);
    expect(isLocalPeer('unknown')).toBe(false);
    expect(isLocalPeer('10.1.2.3:53211')).toBe(false);
    expect(isLocalPeer('[2001:db8::1]:53211')).toBe(false);
  });

  it("passes only requests naming the agent's service, on every request that carries a node", () => {
    expect(refusal('sotw', sotw('a'), 'a', true)).toBeUndefined();
    expect(refusal('delta', delta('a'), 'a', true)).toBeUndefined();
    // Later requests usually carry no node; one that does is checked again (no switching mid-stream).
    expect(refusal('sotw', sotw(), 'a', false)).toBeUndefined();
    expect(refusal('sotw', sotw('b'), 'a', false)).toMatch(/serves service "a" only; node.cluster is "b"/);
    expect(refusal('delta', delta('b'), 'a', true)).toMatch(/node.cluster is "b"/);
    expect(refusal('sotw', sotw(''), 'a', true)).toMatch(/node.cluster is ""/);
    expect(refusal('sotw', sotw(), 'a', true)).toMatch(/first request of a stream must carry the node/);
    expect(refusal('sotw', Buffer.from([0xff, 0xff, 0xff]), 'a', true)).toMatch(/not a valid DiscoveryRequest/);
  });
});
