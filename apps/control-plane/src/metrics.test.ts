// The per-type counters and histograms every response and ACK records must scrape exactly as the
// prom-client metrics they replace: the same text lines and the same JSON, for any observations.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fc from 'fast-check';
import { Counter, Histogram, Registry } from 'prom-client';
import { createMetricsRegistry } from '@trellis/runtime';
import { ADS_PUSH_ORDER, TYPE_SHORT_NAME, type XdsTypeUrl } from '@trellis/envoy-types';
import { propertyRuns } from '@trellis/mesh-schema/testing';
import { ByTypeHistogram, createControlPlaneMetrics } from './metrics';
import type { StreamInfo } from './xds/callbacks';

const BUCKETS = [0, 1, 2, 5, 10, 25, 50, 100, 250, 1000];
const observation = fc.record({
  typeUrl: fc.constantFrom(...ADS_PUSH_ORDER),
  value: fc.oneof(fc.nat({ max: 2000 }), fc.double({ min: 0, max: 5000, noNaN: true }), fc.constantFrom(...BUCKETS)),
});

describe('ByTypeHistogram', () => {
  it('scrapes as a prom-client histogram labelled by type fed the same observations (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(observation, { maxLength: 60 }), async (observations) => {
        const ours = new Registry();
        const reference = new Registry();
        const histogram = new ByTypeHistogram(ours, { name: 'x_bytes', help: 'Bytes', buckets: BUCKETS });
        const promHistogram = new Histogram({
          name: 'x_bytes',
          help: 'Bytes',
          labelNames: ['type'],
          buckets: BUCKETS,
          registers: [reference],
        });
        for (const { typeUrl, value } of observations) {
          histogram.observe(typeUrl, value);
          promHistogram.observe({ type: TYPE_SHORT_NAME[typeUrl] }, value);
        }
        expect(await ours.metrics()).toBe(await reference.metrics());
        expect(JSON.parse(JSON.stringify(await ours.getMetricsAsJSON()))).toEqual(
          JSON.parse(JSON.stringify(await reference.getMetricsAsJSON())),
        );
        ours.resetMetrics();
        reference.resetMetrics();
        expect(await ours.metrics()).toBe(await reference.metrics());
      }),
      { numRuns: propertyRuns(200) },
    );
  });
});

describe('control plane xDS metrics', () => {
  const stream: StreamInfo = {
    streamId: 1,
    nodeId: 'a-1',
    identity: { service: 'a', kind: 'envoy' },
    protocol: 'sotw',
    connectedAt: new Date(),
  };

  it('count responses and ACKs per type as the prom-client counters and histograms would (property)', async () => {
    const events = fc.array(
      fc.record({
        ack: fc.boolean(),
        typeUrl: fc.constantFrom(...ADS_PUSH_ORDER),
        resources: fc.nat({ max: 300 }),
        bytes: fc.nat({ max: 1 << 22 }),
      }),
      { maxLength: 40 },
    );
    await fc.assert(
      fc.asyncProperty(events, fc.boolean(), async (all, scrapeBetween) => {
        const registry = new Registry();
        const reference = new Registry();
        const metrics = createControlPlaneMetrics(registry).callbacks;
        const name = (suffix: string) => `trellis_control_plane_${suffix}`;
        const pushes = new Counter({ name: name('xds_pushes_total'), help: 'h', labelNames: ['type'], registers: [reference] });
        const acks = new Counter({ name: name('xds_acks_total'), help: 'h', labelNames: ['type'], registers: [reference] });
        const resources = new Histogram({
          name: name('xds_response_resources'),
          help: 'h',
          labelNames: ['type'],
          buckets: BUCKETS,
          registers: [reference],
        });
        const bytes = new Histogram({
          name: name('xds_response_bytes'),
          help: 'h',
          labelNames: ['type'],
          buckets: [256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304],
          registers: [reference],
        });
        const series = async (r: Registry) =>
          (await r.metrics())
            .split('\n')
            .filter((line) => /^trellis_control_plane_xds_(pushes_total|acks_total|response_resources|response_bytes)/.test(line));
        for (const [i, e] of all.entries()) {
          const type = TYPE_SHORT_NAME[e.typeUrl as XdsTypeUrl];
          if (e.ack) {
            metrics.onAck!(stream, e.typeUrl, 'v', 0);
            acks.inc({ type });
          } else {
            metrics.onResponse!(stream, {
              typeUrl: e.typeUrl,
              version: 'v',
              nonce: '1',
              resources: e.resources,
              sent: [],
              bytes: e.bytes,
              meshRevision: '1',
            });
            pushes.inc({ type });
            resources.observe({ type }, e.resources);
            bytes.observe({ type }, e.bytes);
          }
          // Counts handed over at one scrape keep adding up at the next.
          if (scrapeBetween && i % 7 === 3) expect(await series(registry)).toEqual(await series(reference));
        }
        expect(await series(registry)).toEqual(await series(reference));
      }),
      { numRuns: propertyRuns(100) },
    );
  });

  const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
  (promtool ? it : it.skip)('pass promtool check metrics once recorded (where promtool is installed)', async () => {
    const registry = createMetricsRegistry('control-plane');
    const metrics = createControlPlaneMetrics(registry).callbacks;
    for (const typeUrl of ADS_PUSH_ORDER) {
      metrics.onResponse!(stream, { typeUrl, version: 'v', nonce: '1', resources: 3, sent: [], bytes: 5000, meshRevision: '1' });
      metrics.onAck!(stream, typeUrl, 'v', Date.now() - 20);
    }
    const text = await registry.metrics();
    expect(text).toMatch(/^trellis_control_plane_proxy_convergence_seconds_count\{type="cds"\} 1$/m);
    const checked = spawnSync(promtool!, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(checked.status === 0 ? 'ok' : `${checked.stdout}${checked.stderr}`).toBe('ok');
  });
});
