// Runs in a child process (grpc-js-xds reads its bootstrap once per process):
// calls xds:///<target> every <interval> ms and prints one JSON line per call.
//   node xds-call-loop.js <target> <intervalMs> [<deadlineMs>]   (bootstrap in GRPC_XDS_BOOTSTRAP_CONFIG)
import { credentials, makeGenericClientConstructor, type ClientUnaryCall, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { register, XdsChannelCredentials } from '@grpc/grpc-js-xds';
import { PROXYLESS_CHANNEL_OPTIONS } from '@trellis/sdk-node';
import { WHO_INSTANCE_HEADER, WhoService } from './who-service';

register();
const [target = '', interval = '25', deadline = '10000'] = process.argv.slice(2);
const Client = makeGenericClientConstructor(WhoService, 'Who');
// With a workload certificate: TLS exactly where the control plane's cluster says so (a callee in
// permissive or strict mode), plaintext otherwise.
const channelCredentials =
  process.env['TRELLIS_TEST_MTLS'] === 'true' ? new XdsChannelCredentials(credentials.createInsecure()) : credentials.createInsecure();
const client = new Client(`xds:///${target}`, channelCredentials, PROXYLESS_CHANNEL_OPTIONS) as unknown as {
  who(req: Buffer, opts: { deadline: number }, cb: (err: ServiceError | null, res?: Buffer) => void): ClientUnaryCall;
};

/** "<instance>" from a plain Who server; "<instance>|<verified caller>" from xds-who-server. */
const answer = (text: string) => {
  const [instance, caller] = text.split('|');
  return caller === undefined ? { instance } : { instance, caller };
};

const loop = (): void => {
  const start = Date.now();
  // Which instance began the response (a plain Who server names itself in its headers), kept for a
  // call that fails after its response began: gRPC does not retry such a call.
  let responseStartedBy: string | undefined;
  const call = client.who(Buffer.alloc(0), { deadline: start + Number(deadline) }, (err, res) => {
    const line = err
      ? { t: Date.now(), start, ok: false, code: err.code, details: err.details, ...(responseStartedBy ? { responseStartedBy } : {}) }
      : { t: Date.now(), start, ok: true, ...answer(res!.toString()) };
    process.stdout.write(`${JSON.stringify(line)}\n`);
    setTimeout(loop, Number(interval));
  });
  call.on('metadata', (headers: Metadata) => {
    const [instance] = headers.get(WHO_INSTANCE_HEADER);
    if (instance !== undefined) responseStartedBy = String(instance);
  });
};
loop();
process.on('SIGTERM', () => process.exit(0));
