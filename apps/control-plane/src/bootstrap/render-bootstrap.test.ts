import { parse } from 'yaml';
import type protobuf from 'protobufjs';
import { ProtoValidator } from '@trellis/envoy-types/validation';
import { buildBootstrap, renderBootstrap, type BootstrapInput } from './render-bootstrap';

const input: BootstrapInput = {
  service: 'orders',
  nodeId: 'orders-7d9f-abc',
  appPort: 8081,
  appProtocol: 'grpc',
  xds: [{ host: 'control-plane.trellis.svc', port: 18000 }],
  locality: { region: 'eu-west', zone: 'eu-west-1a' },
};

let root: protobuf.Root;
beforeAll(() => {
  root = ProtoValidator.load({
    files: [
      'envoy/config/bootstrap/v3/bootstrap.proto',
      'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
      'envoy/extensions/transport_sockets/tls/v3/tls.proto',
      'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
      'envoy/extensions/filters/http/router/v3/router.proto',
    ],
  }).root;
});

/** Every key of a proto-JSON object names a field of its message type (Any followed through "@type"). */
function unknownFields(type: protobuf.Type, value: Record<string, unknown>, path = ''): string[] {
  const errors: string[] = [];
  for (const [key, child] of Object.entries(value)) {
    if (key === '@type') continue;
    const field = type.fields[key];
    if (!field) {
      errors.push(`${path}${key} is not a field of ${type.fullName}`);
      continue;
    }
    const resolved = field.resolve().resolvedType;
    if (
      !resolved ||
      !('fields' in resolved) ||
      (resolved.fullName.startsWith('.google.protobuf.') && resolved.fullName !== '.google.protobuf.Any')
    )
      continue;
    const items = field.repeated ? (child as unknown[]) : field.map ? Object.values(child as object) : [child];
    items.forEach((item, i) => {
      const obj = item as Record<string, unknown>;
      const itemType =
        resolved.fullName === '.google.protobuf.Any'
          ? root.lookupType(String(obj['@type']).split('/').pop()!)
          : (resolved as protobuf.Type);
      errors.push(...unknownFields(itemType, obj, `${path}${key}${field.repeated || field.map ? `[${i}]` : ''}.`));
    });
  }
  return errors;
}

describe('renderBootstrap', () => {
  it('names the node after its service and instance, with locality and the app port in metadata', () => {
    const bootstrap = parse(renderBootstrap(input)) as ReturnType<typeof buildBootstrap>;
    expect(bootstrap['node']).toEqual({
      id: 'orders-7d9f-abc',
      cluster: 'orders',
      locality: { region: 'eu-west', zone: 'eu-west-1a', sub_zone: '' },
      metadata: { 'trellis.app_port': 8081 },
    });
    expect(bootstrap['admin']).toEqual({ address: { socket_address: { address: '127.0.0.1', port_value: 15000 } } });
  });

  it('gets everything over ADS from the control plane, reached by DNS name over HTTP/2', () => {
    const bootstrap = buildBootstrap(input) as {
      dynamic_resources: Record<string, unknown>;
      static_resources: { clusters: Array<Record<string, unknown>> };
    };
    expect(bootstrap.dynamic_resources['cds_config']).toEqual({ ads: {}, resource_api_version: 'V3' });
    expect(bootstrap.dynamic_resources['lds_config']).toEqual({ ads: {}, resource_api_version: 'V3' });
    const [xds, app] = bootstrap.static_resources.clusters;
    expect(xds).toMatchObject({ name: 'trellis-xds', type: 'STRICT_DNS' });
    expect(xds!['typed_extension_protocol_options']).toBeDefined();
    expect(app).toMatchObject({
      name: 'local-app',
      type: 'STATIC',
      load_assignment: {
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 8081 } } } }] }],
      },
    });
  });

  it('lists every control-plane replica as an endpoint of the xDS cluster, so a sidecar fails over without a DNS round', () => {
    const replicas = [
      { host: '10.0.0.5', port: 18000 },
      { host: '10.0.0.6', port: 18000 },
    ];
    const bootstrap = buildBootstrap({ ...input, xds: replicas }) as { static_resources: { clusters: Array<Record<string, unknown>> } };
    const [xds] = bootstrap.static_resources.clusters;
    expect(xds).toMatchObject({
      type: 'STATIC',
      load_assignment: {
        endpoints: [
          {
            lb_endpoints: replicas.map((r) => ({ endpoint: { address: { socket_address: { address: r.host, port_value: r.port } } } })),
          },
        ],
      },
    });
    expect(() => buildBootstrap({ ...input, xds: [] })).toThrow(/at least one control-plane address/);
  });

  it('presents the xDS credential as initial metadata and verifies the control plane over TLS when asked', () => {
    const bootstrap = buildBootstrap({
      ...input,
      xdsToken: '${TRELLIS_XDS_TOKEN}',
      xdsTls: { caFile: '/etc/trellis/ca.pem', certFile: '/c.pem', keyFile: '/k.pem' },
    });
    expect(JSON.stringify(bootstrap)).toContain('{"key":"authorization","value":"Bearer ${TRELLIS_XDS_TOKEN}"}');
    expect(JSON.stringify(bootstrap)).toContain('"trusted_ca":{"filename":"/etc/trellis/ca.pem"}');
    expect(JSON.stringify(buildBootstrap(input))).not.toContain('initial_metadata');
  });

  it('presents the workload certificate to xDS over path-based SDS when no certificate files are given', () => {
    const bootstrap = buildBootstrap({ ...input, xdsTls: { caFile: '/etc/trellis/ca.pem', workloadCertificate: true } });
    const xds = (bootstrap['static_resources'] as { clusters: Array<Record<string, unknown>> }).clusters.find(
      (c) => c['name'] === 'trellis-xds',
    )!;
    const common = (xds['transport_socket'] as { typed_config: { common_tls_context: Record<string, unknown> } }).typed_config
      .common_tls_context;
    expect(common['tls_certificates']).toBeUndefined();
    expect(common['tls_certificate_sds_secret_configs']).toEqual([
      {
        name: 'trellis-workload-certificate',
        sds_config: {
          path_config_source: {
            path: '/var/run/trellis/workload/trellis-workload-certificate.sds.json',
            watched_directory: { path: '/var/run/trellis/workload' },
          },
          resource_api_version: 'V3',
        },
      },
    ]);
  });

  it('writes plain YAML, without anchors or aliases', () => {
    const yaml = renderBootstrap(input);
    expect(yaml).not.toMatch(/[&*]a\d/);
    expect(yaml.startsWith('# Envoy bootstrap of a sidecar of service orders (node orders-7d9f-abc)')).toBe(true);
  });

  it("uses only fields of Envoy's Bootstrap proto, in YAML and in JSON", () => {
    const type = root.lookupType('envoy.config.bootstrap.v3.Bootstrap');
    const full = { ...input, xdsToken: 't', xdsTls: { caFile: '/ca.pem', certFile: '/c.pem', keyFile: '/k.pem' } };
    const workload = { ...input, xdsTls: { caFile: '/ca.pem', workloadCertificate: true } };
    const withReadyPort = { ...input, readyPort: 15021, adminPort: 15100 };
    for (const variant of [full, workload, withReadyPort]) {
      expect(unknownFields(type, parse(renderBootstrap(variant, 'yaml')) as Record<string, unknown>)).toEqual([]);
      expect(unknownFields(type, JSON.parse(renderBootstrap(variant, 'json')) as Record<string, unknown>)).toEqual([]);
    }
    // …and the check itself notices a misspelt field.
    expect(unknownFields(type, { node: { idd: 'x' } })).toEqual(['node.idd is not a field of .envoy.config.core.v3.Node']);
  });

  it('with readyPort, proxies GET /ready on every address to the admin interface, and nothing else', () => {
    const bootstrap = buildBootstrap({ ...input, readyPort: 15021, adminPort: 15100 }) as unknown as {
      static_resources: {
        listeners: Array<{
          name: string;
          address: unknown;
          filter_chains: Array<{ filters: Array<{ typed_config: { route_config: unknown } }> }>;
        }>;
        clusters: Array<{ name: string; load_assignment: unknown }>;
      };
    };
    const [listener] = bootstrap.static_resources.listeners;
    expect(listener!.address).toEqual({ socket_address: { address: '0.0.0.0', port_value: 15021 } });
    expect(listener!.filter_chains[0]!.filters[0]!.typed_config.route_config).toMatchObject({
      virtual_hosts: [
        {
          routes: [
            {
              match: { path: '/ready', headers: [{ name: ':method', string_match: { exact: 'GET' } }] },
              route: { cluster: 'trellis-admin' },
            },
            { match: { prefix: '/' }, direct_response: { status: 404 } },
          ],
        },
      ],
    });
    const admin = bootstrap.static_resources.clusters.find((c) => c.name === 'trellis-admin')!;
    expect(JSON.stringify(admin.load_assignment)).toContain('"port_value":15100');
    // Without it: no static listener, no admin cluster.
    const plain = buildBootstrap(input) as unknown as { static_resources: { listeners?: unknown; clusters: Array<{ name: string }> } };
    expect(plain.static_resources.listeners).toBeUndefined();
    expect(plain.static_resources.clusters.map((c) => c.name)).not.toContain('trellis-admin');
  });
});
