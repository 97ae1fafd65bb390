import { packAny } from '@trellis/envoy-types';
import { HttpConnectionManager } from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import { propertyRuns } from '@trellis/mesh-schema/testing';
import fc from 'fast-check';
import { ACCESS_LOG_FIELDS } from './common';
import { extAuthzFilter, localRateLimitFilter, rbacFilter, routerFilter } from './filters';
import { encodeSidecarHttpConnectionManager, sidecarHttpConnectionManager, type SidecarHcmParts } from './sidecar-hcm';

// The fast path (written into a writer around constant bytes) against the reference
// (the whole message built and encoded by the generated code) on generated input.
describe('encodeSidecarHttpConnectionManager', () => {
  const name = fc.string({ maxLength: 40 });
  const filter = fc.oneof(
    fc.constant(routerFilter()),
    fc.record({ timeout: fc.integer({ min: 1, max: 10_000 }), skip: fc.boolean() }).map((f) => extAuthzFilter(f.timeout, f.skip)),
    fc
      .record({ callers: fc.array(fc.string({ minLength: 1, maxLength: 20 }), { maxLength: 5 }), edge: fc.boolean() })
      .map((f) => rbacFilter(f.callers, f.edge)),
    name.map((prefix) => localRateLimitFilter(prefix, { maxTokens: 5, tokensPerFill: 1, fillIntervalMs: 100 })),
  );
  const tracing = fc.option(
    fc.record({
      collector: fc.record({ host: fc.constantFrom('otel.example', '10.0.0.9'), port: fc.integer({ min: 1, max: 65535 }) }),
      samplingPercent: fc.double({ min: 0, max: 100, noNaN: true }),
    }),
    { nil: undefined },
  );
  const parts: fc.Arbitrary<SidecarHcmParts> = fc
    .record({
      statPrefix: name,
      routeName: name,
      httpFilters: fc.array(filter, { maxLength: 5 }),
      service: name,
      // The mesh's tag names, and any other key that is not a field's (empty, numeric, non-ASCII).
      tags: fc.dictionary(
        fc
          .oneof(
            fc.constantFrom('trellis_direction', 'trellis_service', 'trellis_destination', '', '7', '10'),
            fc.string({ maxLength: 12 }),
          )
          .filter((k) => !(k in ACCESS_LOG_FIELDS)),
        name,
      ),
      tracing,
      explicitProxy: fc.boolean(),
    })
    .map((p) => ({
      statPrefix: p.statPrefix,
      routeName: p.routeName,
      httpFilters: p.httpFilters,
      logTags: p.tags,
      service: p.service,
      tracing: p.tracing,
      explicitProxy: p.explicitProxy,
    }));

  it('encodes byte for byte what the generated encoder gives for the whole message', () => {
    fc.assert(
      fc.property(parts, (p) => {
        const reference = packAny(HttpConnectionManager, sidecarHttpConnectionManager(p));
        const fast = encodeSidecarHttpConnectionManager(p);
        expect(fast.typeUrl).toBe(reference.typeUrl);
        expect(Buffer.from(fast.value).toString('hex')).toBe(Buffer.from(reference.value).toString('hex'));
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('leaves out a tracer config with nothing in it, as the generated encoder does (no service name, no collector)', () => {
    const p: SidecarHcmParts = {
      statPrefix: '',
      routeName: '',
      httpFilters: [],
      logTags: {},
      service: '',
      tracing: undefined,
      explicitProxy: false,
    };
    const reference = packAny(HttpConnectionManager, sidecarHttpConnectionManager(p));
    expect(Buffer.from(encodeSidecarHttpConnectionManager(p).value).toString('hex')).toBe(Buffer.from(reference.value).toString('hex'));
  });

  it('decodes to the connection manager a sidecar needs', () => {
    const hcm = HttpConnectionManager.decode(
      encodeSidecarHttpConnectionManager({
        statPrefix: 'outbound_http',
        routeName: 'outbound_http',
        httpFilters: [extAuthzFilter(500), routerFilter()],
        logTags: { trellis_service: 'a' },
        service: 'a',
        tracing: undefined,
        explicitProxy: true,
      }).value,
    );
    expect(hcm.routeSpecifier).toMatchObject({ $case: 'rds', value: { routeConfigName: 'outbound_http' } });
    expect(hcm.httpFilters.map((f) => f.name)).toEqual(['envoy.filters.http.ext_authz', 'envoy.filters.http.router']);
    expect(hcm.httpProtocolOptions?.allowAbsoluteUrl).toBe(true);
    expect(hcm).toMatchObject({ alwaysSetRequestIdInResponse: true, normalizePath: true, mergeSlashes: true });
  });
});
