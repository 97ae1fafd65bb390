import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { packAny } from '../any';
import { Cluster, Cluster_DiscoveryType, Cluster_LbPolicy } from '../generated/envoy/config/cluster/v3/cluster';
import { OutlierDetection } from '../generated/envoy/config/cluster/v3/outlier_detection';
import { Listener } from '../generated/envoy/config/listener/v3/listener';
import { RouteConfiguration } from '../generated/envoy/config/route/v3/route';
import { LocalRateLimit } from '../generated/envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit';
import { HttpConnectionManager } from '../generated/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import { ProtoValidator, type Violation } from './proto-validator';

const REPO_ROOT = resolve(__dirname, '../../../..');
let validator: ProtoValidator;
beforeAll(() => {
  validator = ProtoValidator.load();
});

const rules = (violations: Violation[]) => violations.map((v) => `${v.path} ${v.rule}`);

const goodCluster = () =>
  Cluster.fromPartial({
    name: 'outbound|b',
    clusterDiscoveryType: { $case: 'type', value: Cluster_DiscoveryType.EDS },
    connectTimeout: { seconds: '1', nanos: 0 },
    lbPolicy: Cluster_LbPolicy.ROUND_ROBIN,
  });

describe('ProtoValidator', () => {
  it('accepts a message that meets every constraint', () => {
    expect(validator.validateMessage(Cluster, goodCluster())).toEqual([]);
  });

  it('checks string.min_len, enum.defined_only and duration.gt from the protos', () => {
    const cluster = { ...goodCluster(), name: '', lbPolicy: 42 as Cluster_LbPolicy, connectTimeout: { seconds: '0', nanos: 0 } };
    expect(rules(validator.validateMessage(Cluster, cluster))).toEqual([
      'name string.min_len',
      'connect_timeout duration.gt',
      'lb_policy enum.defined_only',
    ]);
  });

  it('applies scalar rules to wrapper types (uint32 lte on a UInt32Value)', () => {
    const cluster = { ...goodCluster(), outlierDetection: OutlierDetection.fromPartial({ maxEjectionPercent: 150 }) };
    expect(rules(validator.validateMessage(Cluster, cluster))).toEqual(['outlier_detection.max_ejection_percent uint32.lte']);
  });

  it('reports a required oneof left unset, and a required message field that is missing', () => {
    const listener = Listener.fromPartial({ name: 'l', address: { address: undefined } });
    expect(rules(validator.validateMessage(Listener, listener))).toContain('address.address oneof.required');
    const hcm = HttpConnectionManager.fromPartial({ statPrefix: 'x', routeSpecifier: { $case: 'rds', value: { routeConfigName: 'r' } } });
    expect(rules(validator.validateMessage(HttpConnectionManager, hcm))).toContain('rds.config_source message.required');
  });

  it('checks repeated.min_items and well-known header regexes (non-strict here, as the proto says) on items', () => {
    const routes = RouteConfiguration.fromPartial({
      name: 'r',
      virtualHosts: [
        { name: 'v', domains: [] },
        { name: 'w', domains: ['*'], requestHeadersToRemove: ['x-ok', 'bad\nheader'] },
      ],
    });
    expect(rules(validator.validateMessage(RouteConfiguration, routes))).toEqual([
      'virtual_hosts[0].domains repeated.min_items',
      'virtual_hosts[1].request_headers_to_remove[1] string.well_known_regex',
    ]);
  });

  it('follows google.protobuf.Any into the packed message', () => {
    const hcm = HttpConnectionManager.fromPartial({
      statPrefix: '',
      routeSpecifier: {
        $case: 'rds',
        value: { routeConfigName: 'r', configSource: { configSourceSpecifier: { $case: 'ads', value: {} } } },
      },
    });
    const listener = Listener.fromPartial({
      name: 'l',
      apiListener: { apiListener: packAny(HttpConnectionManager, hcm) },
    });
    expect(rules(validator.validateAny(packAny(Listener, listener)))).toEqual([
      'api_listener.api_listener<HttpConnectionManager>.stat_prefix string.min_len',
    ]);
  });

  it('follows Any values inside maps (typed_per_filter_config) deep in a route configuration', () => {
    const routes = RouteConfiguration.fromPartial({
      name: 'r',
      virtualHosts: [
        {
          name: 'v',
          domains: ['*'],
          typedPerFilterConfig: {
            'envoy.filters.http.local_ratelimit': packAny(LocalRateLimit, LocalRateLimit.fromPartial({ statPrefix: '' })),
          },
        },
      ],
    });
    expect(rules(validator.validateMessage(RouteConfiguration, routes))).toEqual([
      'virtual_hosts[0].typed_per_filter_config["envoy.filters.http.local_ratelimit"]<LocalRateLimit>.stat_prefix string.min_len',
    ]);
  });

  it('says so when an Any holds a type whose proto is not loaded', () => {
    const listener = Listener.fromPartial({
      name: 'l',
      apiListener: { apiListener: { typeUrl: 'type.googleapis.com/example.Unknown', value: Buffer.alloc(0) } },
    });
    expect(rules(validator.validateMessage(Listener, listener))).toEqual(['api_listener.api_listener<Unknown> any.type']);
  });

  it('checks string formats (no Envoy proto we load uses them, so on a proto of our own)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgv-'));
    try {
      mkdirSync(join(dir, 'validate'));
      mkdirSync(join(dir, 'example'));
      copyFileSync(join(REPO_ROOT, 'libs/envoy-types/protos/validate/validate.proto'), join(dir, 'validate/validate.proto'));
      writeFileSync(
        join(dir, 'example/formats.proto'),
        `syntax = "proto3";
package example;
import "validate/validate.proto";
message Formats {
  string host = 1 [(validate.rules).string = {hostname: true}];
  string addr = 2 [(validate.rules).string = {address: true}];
  string uri = 3 [(validate.rules).string = {uri: true}];
  string ip6 = 4 [(validate.rules).string = {ipv6: true}];
}
`,
      );
      const custom = ProtoValidator.load({ protoDir: dir, files: ['example/formats.proto'] });
      const type = custom.root.lookupType('example.Formats');
      const check = (value: Record<string, string>) =>
        rules(custom.validateBytes('example.Formats', type.encode(type.fromObject(value)).finish()));
      expect(check({ host: 'a.example.com', addr: '10.0.0.1', uri: 'https://example.com/x', ip6: 'fd00::1' })).toEqual([]);
      expect(check({ host: '-bad-.example', addr: 'not an address', uri: 'relative/path', ip6: '10.0.0.1' })).toEqual([
        'host string.hostname',
        'addr string.address',
        'uri string.uri',
        'ip6 string.ipv6',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
