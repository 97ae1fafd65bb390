import { Duration } from '@trellis/envoy-types/google/protobuf/duration';
import { MeshFixture } from '../model/mesh-fixture';
import { buildProxyResources } from '../envoy';
import { configDump, durationJson } from './config-dump';
import type { ProxySnapshot } from '../xds/snapshot-cache';

describe('configDump', () => {
  it.each([
    [{ seconds: '2', nanos: 0 }, '2s'],
    [{ seconds: '0', nanos: 250_000_000 }, '0.250s'],
    [{ seconds: '1', nanos: 500 }, '1.000000500s'],
    [{ seconds: '3', nanos: 1_000 }, '3.000001s'],
    [{ seconds: '0', nanos: 0 }, '0s'],
    [{ seconds: '-1', nanos: -500_000_000 }, '-1.500s'],
  ])('prints Duration %j as %s (proto3 JSON)', (duration, text) => {
    expect(durationJson(duration)).toBe(text);
  });

  it('dumps Durations as proto3 JSON strings, nested Anys with "@type", and leaves the generated toJSON as it was', () => {
    const model = new MeshFixture()
      .service('b', { protocol: 'http', policy: { timeoutMs: 2000, healthCheck: { path: '/healthz', intervalMs: 1500 } } })
      .service('a', { dependencies: [{ service: 'b' }] })
      .key('k1')
      .model();
    const set = buildProxyResources(model, { service: 'a', kind: 'envoy' });
    const snapshot = {
      identity: { service: 'a', kind: 'envoy' },
      meshRevision: '1',
      types: new Map([...set].map(([typeUrl, resources]) => [typeUrl, { version: 'v', resources }])),
    } as unknown as ProxySnapshot;
    const dump = configDump(snapshot);
    const cluster = dump.types['cds']!.resources.find((r) => (r as { name: string }).name === 'outbound|b') as Record<string, unknown>;
    expect(cluster).toMatchObject({
      '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
      connectTimeout: '1s',
      healthChecks: [{ interval: '1.500s', timeout: '1s' }],
    });
    const text = JSON.stringify(dump);
    expect(text).not.toMatch(/"seconds"/);
    expect(text).toContain(
      '"@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"',
    );
    expect(dump.types['lds']?.resources.length).toBeGreaterThan(0);
    expect(Duration.toJSON({ seconds: '2', nanos: 0 })).toEqual({ seconds: '2' });
  });
});
