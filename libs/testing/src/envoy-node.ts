// What an Envoy puts in its node besides who it is, for tests and benchmarks that want real-sized nodes: the
// control-plane protocol tests (apps/control-plane/test/support/ads-client.ts) and the xDS fan-out benchmark
// (tools/bench/src/xds-fanout.ts, which encodes it once and appends it to each proxy's own id and cluster).
import type { Node } from '@trellis/envoy-types/envoy/config/core/v3/base';

const EXTENSION_CATEGORIES = [
  'envoy.filters.http',
  'envoy.filters.network',
  'envoy.filters.listener',
  'envoy.access_loggers',
  'envoy.clusters',
];

/**
 * The node fields the same on every Envoy of a build, as it sends them on a stream's first request: its locality,
 * build version, every extension compiled into it with the config types each takes (an official build lists
 * hundreds: with 450 the node is ~50 KB), and its client features. For `Node.fromPartial`.
 */
export function envoyBuildNodeFields(extensions: number): Parameters<typeof Node.fromPartial>[0] {
  return {
    locality: { region: 'eu-west-1', zone: 'eu-west-1a' },
    userAgentVersionType: {
      $case: 'userAgentBuildVersion',
      value: {
        version: { majorNumber: 1, minorNumber: 31, patch: 2 },
        metadata: { 'revision.sha': '5a2b0c1d', 'revision.status': 'Clean', 'build.type': 'RELEASE', 'ssl.version': 'BoringSSL' },
      },
    },
    extensions: Array.from({ length: extensions }, (_, i) => {
      const category = EXTENSION_CATEGORIES[i % EXTENSION_CATEGORIES.length]!;
      return {
        name: `${category}.extension_${i}`,
        category,
        typeUrls: [`envoy.extensions.${category.slice(6)}.extension_${i}.v3.Config`],
      };
    }),
    clientFeatures: ['envoy.lb.does_not_support_overprovisioning', 'fully-qualified-type-url', 'envoy.lrs.supports_send_all_clusters'],
  };
}
