// The simulated Envoys' wire reading and writing (xds-wire.ts) against ts-proto's full encode and decode.
import { TypeUrl } from '@trellis/envoy-types';
import { Node } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { Any } from '@trellis/envoy-types/google/protobuf/any';
import { Cluster } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import {
  DeltaDiscoveryRequest,
  DeltaDiscoveryResponse,
  DiscoveryRequest,
  DiscoveryResponse,
} from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { DeltaResponse, deltaDiscoveryRequestMessage, discoveryRequestMessage, GRPC_PREFIX_BYTES, SotwResponse } from './xds-wire';

/** The message behind gRPC's prefix, checking the prefix: uncompressed, the message's length. */
function unprefixed(message: Buffer): Buffer {
  expect(message[0]).toBe(0);
  expect(message.readUInt32BE(1)).toBe(message.length - GRPC_PREFIX_BYTES);
  return message.subarray(GRPC_PREFIX_BYTES);
}

const cluster = (name: string): Any =>
  Any.fromPartial({
    typeUrl: TypeUrl.Cluster,
    value: Buffer.from(Cluster.encode(Cluster.fromPartial({ name, connectTimeout: { seconds: '5' } })).finish()),
  });
const bytes = (encoded: Uint8Array): Buffer => Buffer.from(encoded);

describe('SotwResponse', () => {
  it('reads the type, version, nonce, resource bytes and (sorted) names of a DiscoveryResponse', () => {
    const resources = [cluster('svc-2|outbound'), cluster('hub|outbound'), cluster('svc-10|outbound')];
    const encoded = DiscoveryResponse.encode(
      DiscoveryResponse.fromPartial({
        versionInfo: 'v42',
        resources,
        canary: true,
        typeUrl: TypeUrl.Cluster,
        nonce: '7',
        controlPlane: { identifier: 'cp-1' },
      }),
    ).finish();
    const response = new SotwResponse().read(bytes(encoded));
    expect(response).toMatchObject({ typeUrl: TypeUrl.Cluster, versionInfo: 'v42', nonce: '7', resourceCount: 3 });
    expect(response.resourceBytes).toBe(resources.reduce((sum, r) => sum + r.value.length, 0));
    expect(response.names()).toEqual(['hub|outbound', 'svc-10|outbound', 'svc-2|outbound']);
  });

  it('forgets the previous response when reused, and reads a type URL it does not know', () => {
    const response = new SotwResponse();
    response.read(
      bytes(
        DiscoveryResponse.encode(
          DiscoveryResponse.fromPartial({ versionInfo: '1', resources: [cluster('a')], typeUrl: TypeUrl.Cluster, nonce: '1' }),
        ).finish(),
      ),
    );
    response.read(
      bytes(DiscoveryResponse.encode(DiscoveryResponse.fromPartial({ typeUrl: 'type.example.com/Other', nonce: '2' })).finish()),
    );
    expect(response).toMatchObject({ typeUrl: 'type.example.com/Other', versionInfo: '', nonce: '2', resourceCount: 0, resourceBytes: 0 });
    expect(response.names()).toEqual([]);
  });

  it('fails on a message cut short rather than reading past it', () => {
    const encoded = DiscoveryResponse.encode(
      DiscoveryResponse.fromPartial({ versionInfo: 'v1', resources: [cluster('a')], typeUrl: TypeUrl.Cluster }),
    ).finish();
    expect(() => new SotwResponse().read(bytes(encoded.subarray(0, encoded.length - 3)))).toThrow(/runs past its message/);
  });
});

describe('DeltaResponse', () => {
  it("reads the type, system version, nonce, each resource's name and version, their bytes and the removed names", () => {
    const resources = [
      { name: 'svc-1|outbound', version: 'a1', resource: cluster('svc-1|outbound'), aliases: ['x'] },
      { name: 'hub|outbound', version: 'b2', resource: cluster('hub|outbound') },
    ];
    const encoded = DeltaDiscoveryResponse.encode(
      DeltaDiscoveryResponse.fromPartial({
        systemVersionInfo: '9',
        resources,
        typeUrl: TypeUrl.Cluster,
        removedResources: ['gone', 'old'],
        nonce: 'n3',
      }),
    ).finish();
    const response = new DeltaResponse().read(bytes(encoded));
    expect(response).toMatchObject({ typeUrl: TypeUrl.Cluster, systemVersionInfo: '9', nonce: 'n3' });
    expect(response.names).toEqual(['svc-1|outbound', 'hub|outbound']);
    expect(response.versions).toEqual(['a1', 'b2']);
    expect(response.removed).toEqual(['gone', 'old']);
    expect(response.resourceBytes).toBe(resources.reduce((sum, r) => sum + r.resource.value.length, 0));
  });
});

describe('request messages', () => {
  const node = Node.fromPartial({ id: 'svc-3-3', cluster: 'svc-3', userAgentName: 'envoy' });

  it('writes a DiscoveryRequest byte for byte as ts-proto does, behind the gRPC prefix', () => {
    for (const request of [
      { node, typeUrl: TypeUrl.Cluster, resourceNames: [], versionInfo: '', responseNonce: '' },
      {
        typeUrl: TypeUrl.ClusterLoadAssignment,
        resourceNames: ['svc-1|outbound', '', 'hub|outbound'],
        versionInfo: 'v7',
        responseNonce: '12',
      },
    ]) {
      const expected = DiscoveryRequest.encode(DiscoveryRequest.fromPartial(request)).finish();
      const actual = unprefixed(
        discoveryRequestMessage({ ...request, node: request.node ? Node.encode(request.node).finish() : undefined }),
      );
      expect(actual).toEqual(Buffer.from(expected));
      expect(DiscoveryRequest.decode(actual)).toEqual(DiscoveryRequest.fromPartial(request));
    }
  });

  it('writes a DeltaDiscoveryRequest byte for byte as ts-proto does, the versions held included', () => {
    const held = new Map([
      ['svc-1|outbound', 'a1'],
      ['hub|outbound', ''],
    ]);
    for (const request of [
      { node, typeUrl: TypeUrl.Cluster },
      { typeUrl: TypeUrl.Cluster, responseNonce: '4' },
      { typeUrl: TypeUrl.ClusterLoadAssignment, resourceNamesSubscribe: ['svc-1|outbound', 'hub|outbound'] },
      { node, typeUrl: TypeUrl.Cluster, resourceNamesSubscribe: [], initialResourceVersions: held },
    ]) {
      const partial = {
        ...request,
        initialResourceVersions: request.initialResourceVersions ? Object.fromEntries(request.initialResourceVersions) : undefined,
      };
      const expected = DeltaDiscoveryRequest.encode(DeltaDiscoveryRequest.fromPartial(partial)).finish();
      const actual = unprefixed(
        deltaDiscoveryRequestMessage({ ...request, node: request.node ? Node.encode(request.node).finish() : undefined }),
      );
      expect(actual).toEqual(Buffer.from(expected));
    }
  });
});
