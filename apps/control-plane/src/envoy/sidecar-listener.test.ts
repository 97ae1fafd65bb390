import { packAny, TypeUrl } from '@trellis/envoy-types';
import { TrafficDirection } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { ListenerFilter } from '@trellis/envoy-types/envoy/config/listener/v3/listener_components';
import { HttpConnectionManager } from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import { meshArbitrary, meshStateOf, propertyRuns } from '@trellis/mesh-schema/testing';
import fc from 'fast-check';
import { buildMeshModel, DEFAULT_TRANSLATOR_SETTINGS, type TranslatorSettings } from '../model';
import { extAuthzFilter, networkPeerCertificateRbacFilter, rbacFilter, routerFilter } from './filters';
import {
  encodeInboundListener,
  encodeOutboundHttpListener,
  encodeOutboundTcpListener,
  inboundListener,
  outboundHttpListener,
  outboundTcpListener,
} from './listeners';
import { buildProxyResources } from './proxy-resources';
import type { SidecarHcmParts } from './sidecar-hcm';
import { encodeSidecarListener, sidecarListener, type SidecarListenerParts, type SidecarNetworkFilter } from './sidecar-listener';
import { sidecarDownstreamTls } from './workload-tls';

const hex = (any: Any) => Buffer.from(any.value).toString('hex');

function expectSameEncoding(fast: Any, reference: Any): void {
  expect(fast.typeUrl).toBe(reference.typeUrl);
  expect(hex(fast)).toBe(hex(reference));
}

// The fast path (the envelope written into a writer, the connection manager in place) against the
// reference (the whole Listener built and encoded by the generated code).
describe('encodeSidecarListener', () => {
  const name = fc.string({ maxLength: 40 });
  const hcm: fc.Arbitrary<SidecarHcmParts> = fc
    .record({
      statPrefix: name,
      routeName: name,
      callers: fc.array(fc.string({ minLength: 1, maxLength: 20 }), { maxLength: 4 }),
      service: name,
      tracing: fc.option(
        fc.record({
          collector: fc.record({ host: fc.constantFrom('otel.example', '10.0.0.9'), port: fc.integer({ min: 1, max: 65535 }) }),
          samplingPercent: fc.double({ min: 0, max: 100, noNaN: true }),
        }),
        { nil: undefined },
      ),
      explicitProxy: fc.boolean(),
    })
    .map((p) => ({
      statPrefix: p.statPrefix,
      routeName: p.routeName,
      httpFilters: [extAuthzFilter(500), rbacFilter(p.callers, false), routerFilter()],
      logTags: { trellis_direction: 'inbound', trellis_service: p.service },
      service: p.service,
      tracing: p.tracing,
      explicitProxy: p.explicitProxy,
    }));
  const filter: fc.Arbitrary<SidecarNetworkFilter> = fc.oneof(
    hcm.map((parts) => ({ hcm: parts })),
    fc
      .record({ prefix: name, ids: fc.array(fc.string({ maxLength: 30 }), { maxLength: 3 }) })
      .map((f) => ({ filter: networkPeerCertificateRbacFilter(f.prefix, f.ids) })),
  );
  const chain = fc.record(
    {
      name,
      transportProtocol: fc.constantFrom('tls', 'raw_buffer', ''),
      transportSocket: fc
        .record({ tcp: fc.boolean(), strict: fc.boolean() })
        .map((t) => sidecarDownstreamTls(t.tcp ? 'tcp' : 'http', t.strict)),
      filters: fc.array(filter, { maxLength: 3 }),
    },
    { requiredKeys: ['name', 'filters'] },
  );
  const parts: fc.Arbitrary<SidecarListenerParts> = fc.record({
    name,
    host: fc.constantFrom('0.0.0.0', '127.0.0.1', '::', ''),
    port: fc.integer({ min: 0, max: 65535 }),
    trafficDirection: fc.constantFrom(TrafficDirection.UNSPECIFIED, TrafficDirection.INBOUND, TrafficDirection.OUTBOUND),
    listenerFilters: fc.array(
      fc.constant(
        ListenerFilter.fromPartial({
          name: 'envoy.filters.listener.tls_inspector',
          configType: { $case: 'typedConfig', value: { typeUrl: 't', value: Buffer.from([1]) } },
        }),
      ),
      { maxLength: 2 },
    ),
    filterChains: fc.array(chain, { maxLength: 3 }),
  });

  it('encodes byte for byte what the generated encoder gives for the whole message', () => {
    fc.assert(
      fc.property(parts, (p) => expectSameEncoding(encodeSidecarListener(p), packAny(Listener, sidecarListener(p)))),
      { numRuns: propertyRuns(300) },
    );
  });

  it('leaves the shared writer usable after a failed encoding', () => {
    const bad = { name: 'x', host: '0.0.0.0', port: 1, trafficDirection: TrafficDirection.INBOUND, listenerFilters: [] };
    expect(() =>
      encodeSidecarListener({
        ...bad,
        filterChains: [{ name: 'c', filters: [{ hcm: { statPrefix: 'p', routeName: 'r' } as SidecarHcmParts }] }],
      }),
    ).toThrow();
    const good: SidecarListenerParts = { ...bad, filterChains: [{ name: 'c', filters: [] }] };
    expectSameEncoding(encodeSidecarListener(good), packAny(Listener, sidecarListener(good)));
  });

  it('writes the connection manager a sidecar needs inside its filter', () => {
    const listener = Listener.decode(encodeOutboundHttpListener({ name: 'a' }, DEFAULT_TRANSLATOR_SETTINGS, false).value);
    const filter = listener.filterChains[0]!.filters[0]!;
    expect(filter.name).toBe('envoy.filters.network.http_connection_manager');
    const typed = filter.configType?.$case === 'typedConfig' ? filter.configType.value : undefined;
    const hcm = HttpConnectionManager.decode(typed!.value);
    expect(hcm.routeSpecifier).toMatchObject({ $case: 'rds', value: { routeConfigName: 'outbound|http' } });
    expect(listener.address?.address).toMatchObject({ $case: 'socketAddress', value: { address: '127.0.0.1' } });
  });
});

describe('the listeners of generated meshes', () => {
  const settings: fc.Arbitrary<TranslatorSettings> = fc
    .record({
      tracing: fc.option(
        fc.record({
          collector: fc.record({ host: fc.constantFrom('otel.example', '10.0.0.9'), port: fc.integer({ min: 1, max: 65535 }) }),
          samplingPercent: fc.double({ min: 0, max: 100, noNaN: true }),
        }),
        { nil: undefined },
      ),
      outboundPort: fc.integer({ min: 1, max: 65535 }),
      authzTimeoutMs: fc.integer({ min: 1, max: 10_000 }),
    })
    .map((s) => ({ ...DEFAULT_TRANSLATOR_SETTINGS, ...s, ...(s.tracing ? {} : { tracing: undefined }) }));

  it('are encoded byte for byte as the generated encoder encodes the reference listeners, under their own names', () => {
    let compared = 0;
    fc.assert(
      fc.property(meshArbitrary, settings, (mesh, s) => {
        const model = buildMeshModel(meshStateOf(mesh), s);
        for (const service of model.services.values()) {
          expectSameEncoding(
            encodeInboundListener(service, model.tokens, s, model.trustDomain),
            packAny(Listener, inboundListener(service, model.tokens, s, model.trustDomain)),
          );
          for (const rateLimit of [false, true])
            expectSameEncoding(
              encodeOutboundHttpListener(service, s, rateLimit),
              packAny(Listener, outboundHttpListener(service, s, rateLimit)),
            );
          for (const dep of service.dependencies) {
            const callee = model.services.get(dep.service)!;
            expectSameEncoding(encodeOutboundTcpListener(service, callee), packAny(Listener, outboundTcpListener(service, callee)));
          }
          // What a sidecar is sent: each listener resource is named as its bytes name it.
          for (const resource of buildProxyResources(model, { service: service.name, kind: 'envoy' }).get(TypeUrl.Listener)!.values()) {
            expect(Listener.decode(resource.any.value).name).toBe(resource.name);
            compared++;
          }
        }
      }),
      { numRuns: propertyRuns(100) },
    );
    expect(compared).toBeGreaterThan(100);
  });
});
