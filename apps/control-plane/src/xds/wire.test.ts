// The hand-written response encoders must produce exactly the generated encoders' bytes.
import fc from 'fast-check';
import { TypeUrl } from '@trellis/envoy-types';
import { propertyRuns } from '@trellis/mesh-schema/testing';
import { DeltaDiscoveryResponse, DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { makeCluster } from '../../test/support/resources';
import { encodeDeltaDiscoveryResponse, encodeDiscoveryResponse } from './wire';

const generated = (response: DiscoveryResponse): Buffer => Buffer.from(DiscoveryResponse.encode(response).finish());
const generatedDelta = (response: DeltaDiscoveryResponse): Buffer => Buffer.from(DeltaDiscoveryResponse.encode(response).finish());

// Strings with multi-byte characters, and byte strings long enough for multi-byte length prefixes.
const text = fc.string({ unit: 'binary', maxLength: 40 });
const any = fc.record({ typeUrl: text, value: fc.uint8Array({ maxLength: 400 }).map((bytes) => Buffer.from(bytes)) });
const controlPlane = fc.option(fc.record({ identifier: text }), { nil: undefined });

describe('encodeDiscoveryResponse', () => {
  it('writes the generated encoder bytes for a response with resources', () => {
    const response = DiscoveryResponse.fromPartial({
      versionInfo: 'v1',
      resources: [makeCluster('a').any, makeCluster('b').any],
      typeUrl: TypeUrl.Cluster,
      nonce: '7',
      controlPlane: { identifier: 'cp' },
    });
    expect(encodeDiscoveryResponse(response)).toEqual(generated(response));
  });

  it('writes the generated encoder bytes for an empty response', () => {
    const response = DiscoveryResponse.fromPartial({ versionInfo: 'v0', typeUrl: TypeUrl.Listener, nonce: '1' });
    expect(encodeDiscoveryResponse(response)).toEqual(generated(response));
  });

  it('writes the generated encoder bytes for any response (property)', () => {
    fc.assert(
      fc.property(
        fc.record({
          versionInfo: text,
          resources: fc.array(any, { maxLength: 5 }),
          canary: fc.boolean(),
          typeUrl: text,
          nonce: text,
          controlPlane,
        }),
        (fields) => {
          const response = DiscoveryResponse.fromPartial(fields);
          expect(encodeDiscoveryResponse(response)).toEqual(generated(response));
        },
      ),
      { numRuns: propertyRuns(200) },
    );
  });
});

describe('encodeDeltaDiscoveryResponse', () => {
  const resource = fc.record({
    name: text,
    aliases: fc.array(text, { maxLength: 2 }),
    version: text,
    resource: fc.option(any, { nil: undefined }),
  });

  it('writes the generated encoder bytes for any response Trellis sends (property)', () => {
    fc.assert(
      fc.property(
        fc.record({
          systemVersionInfo: text,
          resources: fc.array(resource, { maxLength: 5 }),
          typeUrl: text,
          removedResources: fc.array(text, { maxLength: 3 }),
          nonce: text,
          controlPlane,
        }),
        (fields) => {
          const response = DeltaDiscoveryResponse.fromPartial(fields);
          expect(encodeDeltaDiscoveryResponse(response)).toEqual(generatedDelta(response));
        },
      ),
      { numRuns: propertyRuns(200) },
    );
  });

  it('falls back to the generated encoder for fields Trellis does not set', () => {
    const response = DeltaDiscoveryResponse.fromPartial({
      systemVersionInfo: 'v1',
      resources: [{ name: 'a', version: '1', resource: makeCluster('a').any, ttl: { seconds: '5', nanos: 0 } }],
      typeUrl: TypeUrl.Cluster,
      removedResourceNames: [{ name: 'b' }],
      nonce: '3',
    });
    expect(encodeDeltaDiscoveryResponse(response)).toEqual(generatedDelta(response));
  });
});
