// The benchmark proper (see authz-check.mjs). Three roles in one file:
//   (no role)      orchestrator: starts each server as a child, loads it with h2load, compares
//   --role echo    a bare grpc-js server (authz's server options) answering the Check path with the request bytes
//   --role authz   authz (startAuthz) against a real etcd and Redis, A→B declared, token cached
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { CheckRequest } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { startEtcd, startRedis } from '@trellis/testing';
import { startAuthz } from '../../../apps/authz/src/authz';
import { loadAuthzConfig } from '../../../apps/authz/src/config';
import { GRPC_SERVER_OPTIONS } from '../../../apps/authz/src/grpc/grpc-server';
import { authzTestEnv, checkRequest, KeyDir, outbound } from '../../../apps/authz/test/support/harness';

const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

const { values: args } = parseArgs({
  options: {
    role: { type: 'string' },
    requests: { type: 'string', default: '100000' },
    clients: { type: 'string', default: '8' },
    streams: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '2' },
    // Answer with this many bytes instead of the request (e.g. the size of authz's OK response, to separate the cost of the bigger reply).
    'echo-response-bytes': { type: 'string', default: '0' },
  },
});

async function echoServer(): Promise<void> {
  // The same server options as authz, so the difference measured is the Check itself.
  const server = new Server(GRPC_SERVER_OPTIONS);
  const identity = (b: Buffer) => b;
  const fixed = Number(args['echo-response-bytes']) > 0 ? Buffer.alloc(Number(args['echo-response-bytes']), 0x61) : undefined;
  server.register(
    CHECK_PATH,
    (call: { request: Buffer }, callback: (e: null, r: Buffer) => void) => callback(null, fixed ?? call.request),
    identity,
    identity,
    'unary',
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  announce({ grpcPort: port });
  await untilTerminated();
  server.forceShutdown();
}

async function authzServer(): Promise<void> {
  const [etcd, redis] = await Promise.all([startEtcd(), startRedis()]);
  const keys = await KeyDir.create();
  await keys.addKey('key');
  const client = etcd.client();
  const store = new MeshStore(client, new KeyLayout(etcd.prefix));
  const base = { team: 'bench', protocol: 'grpc' as const, port: 8080 };
  await store.createService({ ...base, name: 'orders' }, 'bench');
  await store.createService({ ...base, name: 'checkout', dependencies: [{ service: 'orders' }] }, 'bench');
  const config = loadAuthzConfig(authzTestEnv(etcd, redis, keys));
  const authz = await startAuthz({ config, logger: createLogger('authz', 'warn'), etcd: client });
  await authz.whenReady();
  announce({ grpcPort: authz.grpcPort, httpPort: authz.httpPort });
  await untilTerminated();
  await authz.close();
  client.close();
  await Promise.all([etcd.close(), redis.close()]);
  await keys.remove();
}

function announce(ports: Record<string, number>): void {
  process.stdout.write(`READY ${JSON.stringify(ports)}\n`);
}

function untilTerminated(): Promise<void> {
  return new Promise((resolve) => process.once('SIGTERM', () => resolve()));
}

interface Started {
  child: ChildProcess;
  ports: { grpcPort: number; httpPort?: number };
}

function startRole(role: string): Promise<Started> {
  const roleArgs = ['--role', role, '--echo-response-bytes', args['echo-response-bytes']!];
  const child = spawn(process.execPath, [process.argv[1]!, ...roleArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split('\n').find((l) => l.startsWith('READY '));
      if (line) resolve({ child, ports: JSON.parse(line.slice(6)) });
    });
    child.once('exit', (code) => reject(new Error(`${role} server exited with ${code} before it was ready`)));
  });
}

async function stopRole(started: Started): Promise<void> {
  const exited = new Promise((resolve) => started.child.once('exit', resolve));
  started.child.kill('SIGTERM');
  await exited;
}

interface LoadResult {
  rps: number;
  /** Requests per second of the server's own CPU time: robust when other work shares the cores. */
  rpsPerCpu: number;
  succeeded: number;
  failed: number;
  meanLatencyMs: number;
}

/** utime + stime of a process, in seconds (Linux /proc; USER_HZ is 100 on every mainstream kernel). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function h2load(server: Started, bodyFile: string, requests: number): LoadResult {
  const port = server.ports.grpcPort;
  const cpuBefore = cpuSeconds(server.child.pid!);
  const run = spawnSync(
    'h2load',
    [
      '-n',
      String(requests),
      '-c',
      args.clients!,
      '-m',
      args.streams!,
      '-t',
      '1',
      '-H',
      'content-type: application/grpc',
      '-H',
      'te: trailers',
      '-d',
      bodyFile,
      `http://127.0.0.1:${port}${CHECK_PATH}`,
    ],
    { encoding: 'utf8' },
  );
  if (run.error) throw new Error(`h2load: ${run.error.message} (Debian: apt-get install nghttp2-client)`);
  const cpu = cpuSeconds(server.child.pid!) - cpuBefore;
  const text = run.stdout;
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(text)?.[1]);
  const [, succeeded, failed] = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(text) ?? [];
  const mean = /time for request:\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(\w+)/.exec(text);
  const meanLatencyMs = mean ? Number(mean[1]) * (mean[2] === 'us' ? 0.001 : mean[2] === 's' ? 1000 : 1) : NaN;
  if (!Number.isFinite(rps)) throw new Error(`could not read h2load's output:\n${text}\n${run.stderr}`);
  return { rps, rpsPerCpu: Number(succeeded) / cpu, succeeded: Number(succeeded), failed: Number(failed), meanLatencyMs };
}

async function okChecks(httpPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return [...text.matchAll(/^trellis_authz_checks_total\{[^}]*result="ok"[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

async function minted(httpPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return [...text.matchAll(/^trellis_authz_tokens_minted_total\{[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

async function orchestrate(): Promise<void> {
  const requests = Number(args.requests);
  const rounds = Number(args.rounds);
  const dir = mkdtempSync(join(tmpdir(), 'bench-body-'));
  const bodyFile = join(dir, 'check.bin');
  // One gRPC message: a 5-byte prefix (uncompressed, length) and a realistic outbound CheckRequest.
  const message = CheckRequest.encode(
    checkRequest({
      ...outbound('checkout', 'orders'),
      headers: { ':method': 'GET', ':path': '/orders/42', 'user-agent': 'bench', 'x-request-id': 'b7a2c1d0-0000-4000-8000-000000000000' },
      path: '/orders/42',
    }),
  ).finish();
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  writeFileSync(bodyFile, Buffer.concat([prefix, message]));

  console.log(
    `h2load -n ${requests} -c ${args.clients} -m ${args.streams} -t 1, ${rounds} round(s) each, CheckRequest ${message.length} bytes, echo answers ${Number(args['echo-response-bytes']) > 0 ? `${args['echo-response-bytes']} bytes` : 'with the request'}`,
  );
  const [echo, authz] = [await startRole('echo'), await startRole('authz')];
  const best = { echo: 0, authz: 0 };
  const perCpu = { echo: [] as number[], authz: [] as number[] };
  // Other work on the machine changes from minute to minute: compare each authz run with the echo run just before it.
  const roundRatios: number[] = [];
  try {
    const okBefore = await okChecks(authz.ports.httpPort!);
    // Warm up both (JIT, connection setup) and mint the one token the run needs.
    h2load(echo, bodyFile, Math.min(20_000, requests));
    h2load(authz, bodyFile, Math.min(20_000, requests));
    const mintedAfterWarmup = await minted(authz.ports.httpPort!);
    let measured = 0;
    for (let round = 1; round <= rounds; round++) {
      let echoRps = 0;
      for (const [name, server] of [
        ['echo', echo],
        ['authz', authz],
      ] as const) {
        const result = h2load(server, bodyFile, requests);
        if (name === 'authz') measured += result.succeeded;
        if (result.failed > 0) throw new Error(`${name}: ${result.failed} requests failed`);
        best[name] = Math.max(best[name], result.rps);
        if (name === 'echo') echoRps = result.rps;
        else roundRatios.push(result.rps / echoRps);
        perCpu[name].push(result.rpsPerCpu);
        console.log(
          `round ${round} ${name.padEnd(5)} ${result.rps.toFixed(0).padStart(7)} req/s  ${result.rpsPerCpu.toFixed(0).padStart(7)} req/CPU-s  mean ${result.meanLatencyMs.toFixed(2)} ms  ${result.succeeded} ok`,
        );
      }
    }
    // Every measured authz request must have been an allowed Check served from cache.
    const okAfter = await okChecks(authz.ports.httpPort!);
    const mintedAtEnd = await minted(authz.ports.httpPort!);
    console.log(
      `authz: ${okAfter - okBefore} Checks allowed (${measured} measured + warm-up), tokens minted during measurement: ${mintedAtEnd - mintedAfterWarmup}`,
    );
    if (mintedAtEnd !== mintedAfterWarmup) throw new Error('the measured run minted tokens: not a cache-hit benchmark');
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    console.log(
      `wall clock, per round (authz / the echo run before it): median ${(100 * median(roundRatios)).toFixed(1)}% of [${roundRatios.map((r) => (100 * r).toFixed(0)).join(', ')}]`,
    );
    console.log(
      `wall clock: best echo ${best.echo.toFixed(0)} req/s, best authz ${best.authz.toFixed(0)} req/s, ratio ${((100 * best.authz) / best.echo).toFixed(1)}%`,
    );
    console.log(
      `server CPU: median echo ${median(perCpu.echo).toFixed(0)} req/CPU-s, median authz ${median(perCpu.authz).toFixed(0)} req/CPU-s, ratio ${((100 * median(perCpu.authz)) / median(perCpu.echo)).toFixed(1)}%`,
    );
  } finally {
    await Promise.all([stopRole(echo), stopRole(authz)]);
    rmSync(dir, { recursive: true, force: true });
  }
}

const role = args.role;
(role === 'echo' ? echoServer() : role === 'authz' ? authzServer() : orchestrate()).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
