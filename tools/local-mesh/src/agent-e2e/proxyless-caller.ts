// A proxyless gRPC caller for the agent's end-to-end suite: grpc-js-xds configured by
// the control plane (node.cluster CALLER_SERVICE), calling xds:///CALLER_TARGET
// CALLER_RATE times a second, and printing every second how many calls succeeded and
// failed, and which instances answered.
import { credentials, Metadata } from '@grpc/grpc-js';
import { HopClient } from '@trellis/envoy-types/trellis/demo/v1/hop';
import { PROXYLESS_CHANNEL_OPTIONS } from '@trellis/sdk-node';

const service = process.env['CALLER_SERVICE']!;
const target = process.env['CALLER_TARGET']!;
const rate = Number(process.env['CALLER_RATE'] ?? 25);

async function main(): Promise<void> {
  process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify({
    xds_servers: [{ server_uri: process.env['TRELLIS_XDS_SERVER'], channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: `${service}-1`, cluster: service, locality: { zone: 'local' } },
  });
  const xds = await import('@grpc/grpc-js-xds');
  xds.register();
  const client = new HopClient(`xds:///${target}`, credentials.createInsecure(), PROXYLESS_CHANNEL_OPTIONS);

  let window = { ok: 0, failed: 0, instances: {} as Record<string, number>, errors: [] as string[] };
  setInterval(() => {
    client.call({ origin: service }, new Metadata(), { deadline: Date.now() + 5_000 }, (err, reply) => {
      if (err) {
        window.failed++;
        if (window.errors.length < 3) window.errors.push(`${err.code} ${err.details}`);
      } else {
        window.ok++;
        const instance = reply!.hops[0]?.instance ?? '?';
        window.instances[instance] = (window.instances[instance] ?? 0) + 1;
      }
    });
  }, 1000 / rate);
  setInterval(() => {
    process.stdout.write(`${JSON.stringify({ msg: 'calls', ...window })}\n`);
    window = { ok: 0, failed: 0, instances: {}, errors: [] };
  }, 1000);
}

void main();
