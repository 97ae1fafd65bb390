#!/usr/bin/env node
// Generates libs/envoy-types/src/generated from the Envoy / xds / googleapis /
// protoc-gen-validate protos shipped inside the pinned @grpc/grpc-js-xds package,
// and from Trellis's own protos in proto/trellis.
// Nothing this script writes is committed: it runs as the `envoy-types:generate`
// nx target (cached on its inputs) before build, typecheck and test.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(import.meta.url);
const xdsPackage = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
const deps = join(xdsPackage, 'deps');

// Kept (gitignored) beside the output: ProtoValidator reads the same protos for validate.rules.
const stagingDir = join(root, 'libs/envoy-types/protos');
const outDir = join(root, 'libs/envoy-types/src/generated');

// The entry points we use; their imports come along through --include-imports.
export const ENTRY_PROTOS = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/service/discovery/v3/discovery.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/core/v3/base.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/network/rbac/v3/rbac.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/filters/http/jwt_authn/v3/config.proto',
  'envoy/extensions/filters/http/rbac/v3/rbac.proto',
  'envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto',
  'envoy/extensions/filters/http/fault/v3/fault.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  // Sidecar retries move off the hosts already tried (RetryPolicy.retry_host_predicate).
  'envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto',
  'envoy/service/secret/v3/sds.proto',
  'envoy/service/auth/v3/external_auth.proto',
  // The sidecars' tracer: it injects W3C traceparent (HttpConnectionManager.tracing.provider).
  'envoy/config/trace/v3/opentelemetry.proto',
  // Trellis's own (proto/trellis).
  'trellis/demo/v1/hop.proto',
];

// Options that compile cleanly under `strict` (see libs/envoy-types/README.md).
const TS_PROTO_OPTIONS = [
  'outputServices=grpc-js',
  'esModuleInterop=true',
  'env=node',
  'oneof=unions-value',
  'forceLong=string',
  'useDate=true',
  'outputTypeRegistry=true',
  'outputTypeAnnotations=optional',
  'useExactTypes=false',
];

function stageProtos() {
  rmSync(stagingDir, { recursive: true, force: true });
  mkdirSync(stagingDir, { recursive: true });
  for (const [from, dirs] of [
    ['envoy-api', ['envoy']],
    ['xds', ['xds', 'udpa']],
    ['googleapis', ['google']],
    ['protoc-gen-validate', ['validate']],
  ]) {
    for (const dir of dirs) cpSync(join(deps, from, dir), join(stagingDir, dir), { recursive: true });
  }
  cpSync(join(root, 'proto/trellis'), join(stagingDir, 'trellis'), { recursive: true });
  // The shipped validate.proto predates the envoy-api it ships with: Envoy's
  // protos use StringRules.ignore_empty, which this copy lacks.
  const validateProto = join(stagingDir, 'validate/validate.proto');
  const source = readFileSync(validateProto, 'utf8');
  if (!/ignore_empty\s*=\s*26/.test(source.split('message StringRules')[1] ?? '')) {
    const patched = source.replace(/message StringRules \{/, 'message StringRules {\n  optional bool ignore_empty = 26;');
    if (patched === source) throw new Error('validate.proto: StringRules not found; cannot add ignore_empty');
    writeFileSync(validateProto, patched);
  }
  writeFileSync(join(stagingDir, 'buf.yaml'), 'version: v2\n');
}

function generate() {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const template = {
    version: 'v2',
    plugins: [
      {
        local: join(root, 'node_modules/.bin/protoc-gen-ts_proto'),
        out: outDir,
        opt: TS_PROTO_OPTIONS,
      },
    ],
  };
  const buf = join(root, 'node_modules/.bin/buf');
  if (!existsSync(buf)) throw new Error('buf not found: run `npm ci` first');
  const args = ['generate', stagingDir, '--template', JSON.stringify(template), '--include-imports', '--include-wkt'];
  for (const proto of ENTRY_PROTOS) args.push('--path', join(stagingDir, proto));
  execFileSync(buf, args, { stdio: 'inherit', cwd: stagingDir });
}

stageProtos();
generate();
console.log(`envoy-types: generated TypeScript into ${outDir}`);
