// Encoding of ADS responses that reuses each resource's bytes. Snapshots share
// one `Any` object per distinct resource, so the length-delimited `resources`
// field of a DiscoveryResponse is encoded once per resource and then only
// concatenated for every stream that receives it; the per-stream part (version,
// type URL, nonce, control plane) stays small. Protobuf allows fields in any order.
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { Any } from '@trellis/envoy-types/google/protobuf/any';
import { AggregatedDiscoveryServiceService } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';

const RESOURCES_FIELD_TAG = (2 << 3) | 2; // field 2, length-delimited

const encodedResourceFields = new WeakMap<Any, Buffer>();

function resourceField(any: Any): Buffer {
  let field = encodedResourceFields.get(any);
  if (!field) {
    const bytes = Any.encode(any, new BinaryWriter().uint32(RESOURCES_FIELD_TAG).fork()).join().finish();
    field = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    encodedResourceFields.set(any, field);
  }
  return field;
}

export function encodeDiscoveryResponse(response: DiscoveryResponse): Buffer {
  const head = DiscoveryResponse.encode({ ...response, resources: [] }).finish();
  return Buffer.concat([head, ...response.resources.map(resourceField)]);
}

/** The ADS service definition with the sharing encoder for state-of-the-world responses. */
export const AdsServiceDefinition = {
  ...AggregatedDiscoveryServiceService,
  streamAggregatedResources: { ...AggregatedDiscoveryServiceService.streamAggregatedResources, responseSerialize: encodeDiscoveryResponse },
} as const;
