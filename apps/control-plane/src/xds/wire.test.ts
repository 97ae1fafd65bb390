import { TypeUrl } from '@trellis/envoy-types';
import { DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { makeCluster } from '../../test/support/resources';
import { encodeDiscoveryResponse } from './wire';

describe('encodeDiscoveryResponse', () => {
  it('decodes to the same response as the generated encoder', () => {
    const response = DiscoveryResponse.fromPartial({
      versionInfo: 'v1',
      resources: [makeCluster('a').any, makeCluster('b').any],
      typeUrl: TypeUrl.Cluster,
      nonce: '7',
      controlPlane: { identifier: 'cp' },
    });
    const shared = encodeDiscoveryResponse(response);
    expect(DiscoveryResponse.decode(shared)).toEqual(DiscoveryResponse.decode(DiscoveryResponse.encode(response).finish()));
    // Second encoding of the same resources reuses their bytes and stays identical.
    expect(encodeDiscoveryResponse(response)).toEqual(shared);
  });

  it('encodes an empty response', () => {
    const response = DiscoveryResponse.fromPartial({ versionInfo: 'v0', typeUrl: TypeUrl.Listener, nonce: '1' });
    expect(DiscoveryResponse.decode(encodeDiscoveryResponse(response))).toEqual(
      DiscoveryResponse.decode(DiscoveryResponse.encode(response).finish()),
    );
  });
});
