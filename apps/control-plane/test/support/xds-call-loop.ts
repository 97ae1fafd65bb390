// Runs in a child process (grpc-js-xds reads its bootstrap once per process):
// calls xds:///<target> every <interval> ms and prints one JSON line per call.
//   node xds-call-loop.js <target> <intervalMs> [<deadlineMs>]   (bootstrap in GRPC_XDS_BOOTSTRAP_CONFIG)
import { credentials, makeGenericClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { register, XdsChannelCredentials } from '@grpc/grpc-js-xds';
import { PROXYLESS_CHANNEL_OPTIONS } from '@trellis/sdk-node';
import { WhoService } from './who-service';

register();
const [target = '', interval = '25', deadline = '10000'] = process.argv.slice(2);
const Client = makeGenericClientConstructor(WhoService, 'Who');
// With a workload certificate: TLS exactly where the control plane's cluster says so (a callee in
// permissive or strict mode), plaintext otherwise.
const channelCredentials =
  process.env['TRELLIS_TEST_MTLS'] === 'true' ? new XdsChannelCredentials(credentials.createInsecure()) : credentials.createInsecure();
const client = new Client(`xds:///${target}`, channelCredentials, PROXYLESS_CHANNEL_OPTIONS) as unknown as {
  who(req: Buffer, opts: { deadline: number }, cb: (err: ServiceError | null, res?: Buffer) => void): void;
};

/** "<instance>" from a plain Who server; "<instance>|<verified caller>" from xds-who-server. */
const answer = (text: string) => {
  const [instance, caller] = text.split('|');
  return caller === undefined ? { instance } : { instance, caller };
};

const loop = (): void => {
  client.who(Buffer.alloc(0), { deadline: Date.now() + Number(deadline) }, (err, res) => {
    const line = err
      ? { t: Date.now(), ok: false, code: err.code, details: err.details }
      : { t: Date.now(), ok: true, ...answer(res!.toString()) };
    process.stdout.write(`${JSON.stringify(line)}\n`);
    setTimeout(loop, Number(interval));
  });
};
loop();
process.on('SIGTERM', () => process.exit(0));
