// Runs in a child process (grpc-js-xds reads its bootstrap once per process):
// calls xds:///<target> every <interval> ms and prints one JSON line per call.
//   node xds-call-loop.js <target> <intervalMs>   (bootstrap in GRPC_XDS_BOOTSTRAP_CONFIG)
import { credentials, makeGenericClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { register } from '@grpc/grpc-js-xds';
import { WhoService } from './who-service';

register();
const [target = '', interval = '25'] = process.argv.slice(2);
const Client = makeGenericClientConstructor(WhoService, 'Who');
const client = new Client(`xds:///${target}`, credentials.createInsecure()) as unknown as {
  who(req: Buffer, opts: { deadline: number }, cb: (err: ServiceError | null, res?: Buffer) => void): void;
};

const loop = (): void => {
  client.who(Buffer.alloc(0), { deadline: Date.now() + 10_000 }, (err, res) => {
    const line = err
      ? { t: Date.now(), ok: false, code: err.code, details: err.details }
      : { t: Date.now(), ok: true, instance: res!.toString() };
    process.stdout.write(`${JSON.stringify(line)}\n`);
    setTimeout(loop, Number(interval));
  });
};
loop();
process.on('SIGTERM', () => process.exit(0));
