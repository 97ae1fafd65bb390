// The fault suite's steady traffic: a meshed proxyless service (grpc-js-xds
// configured by the control plane, A→B tokens from authz through @trellis/sdk-node)
// calling xds:///LOAD_TARGET LOAD_RATE times a second, each call with a 10 s
// deadline. Every second it prints one line: calls that succeeded and failed in
// that second, by gRPC status code.
import { credentials, Metadata } from '@grpc/grpc-js';
import { HopClient } from '@trellis/envoy-types/trellis/demo/v1/hop';
import {
  certificateFilesIn,
  MeshTokenClient,
  meshTokenInterceptor,
  PROXYLESS_CHANNEL_OPTIONS,
  proxylessBootstrap,
} from '@trellis/sdk-node';

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`load-caller: ${name} is required`);
  return value;
};
const service = env('LOAD_SERVICE');
const target = env('LOAD_TARGET');
const rate = Number(process.env['LOAD_RATE'] ?? 25);

async function main(): Promise<void> {
  process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify(
    proxylessBootstrap({ xdsServer: env('TRELLIS_XDS_SERVER'), service, nodeId: `${service}-load`, locality: { zone: 'local' } }),
  );
  const xds = await import('@grpc/grpc-js-xds');
  xds.register();
  // Tokens on authz's mTLS port, with the workload certificate an instance of this service's agent keeps.
  const tokens = new MeshTokenClient({
    authzUrl: env('TRELLIS_AUTHZ_MTLS_URL'),
    service,
    certificates: certificateFilesIn(env('TRELLIS_CERTIFICATE_DIR')),
  });
  const client = new HopClient(`xds:///${target}`, credentials.createInsecure(), {
    ...PROXYLESS_CHANNEL_OPTIONS,
    interceptors: [meshTokenInterceptor(tokens, target)],
  });

  let window = { ok: 0, failed: 0, codes: {} as Record<string, number>, errors: [] as string[] };
  setInterval(() => {
    client.call({ origin: service }, new Metadata(), { deadline: Date.now() + 10_000 }, (err) => {
      if (!err) return void window.ok++;
      window.failed++;
      window.codes[err.code] = (window.codes[err.code] ?? 0) + 1;
      if (window.errors.length < 3) window.errors.push(`${err.code} ${err.details}`);
    });
  }, 1000 / rate);
  setInterval(() => {
    process.stdout.write(`${JSON.stringify({ msg: 'calls', ...window })}\n`);
    window = { ok: 0, failed: 0, codes: {}, errors: [] };
  }, 1000);
}

void main();
process.on('SIGTERM', () => process.exit(0));
