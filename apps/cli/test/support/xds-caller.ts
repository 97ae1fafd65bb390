// A proxyless grpc-js-xds app for the relay test, run by `trellis agent` as its app
// (the agent hands it GRPC_XDS_BOOTSTRAP naming the relay): calls the standard health
// service of xds:///<target> every 200 ms and prints one JSON line per call.
import { credentials, makeGenericClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { register } from '@grpc/grpc-js-xds';
import { service as HealthService } from 'grpc-health-check';

register();
const target = process.argv[2] ?? '';
const Health = makeGenericClientConstructor(HealthService, 'Health');
const client = new Health(`xds:///${target}`, credentials.createInsecure()) as unknown as {
  check(req: { service: string }, opts: { deadline: number }, cb: (err: ServiceError | null, res?: { status: string }) => void): void;
};
const loop = (): void => {
  client.check({ service: '' }, { deadline: Date.now() + 10_000 }, (err, res) => {
    const line = err
      ? { call: 'xds-caller', ok: false, code: err.code, details: err.details }
      : { call: 'xds-caller', ok: true, status: res!.status };
    process.stdout.write(`${JSON.stringify(line)}\n`);
    setTimeout(loop, 200);
  });
};
loop();
process.on('SIGTERM', () => process.exit(0));
