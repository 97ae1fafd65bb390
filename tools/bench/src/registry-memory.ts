// The registry's memory over a long run of writes (see ../registry-memory.mjs): does it level off,
// or grow with every write? Two roles in one file, each its own process:
//   (no role)         orchestrator: etcd, the write/read churn, the samples, the heap comparison
//   --role registry   the registry (startRegistry) against that etcd, run with --expose-gc; on
//                     request it collects garbage and reports process.memoryUsage(), or writes a
//                     heap snapshot (the harness does this, not the registry: no endpoint for it)
// The churn, per step: create a service (a new name every time, as a month of real use brings),
// replace it (If-Match), register two instances under 5 s leases, heartbeat one, deregister the
// other, read it back through the API and the UI pages, and delete it — the service deletes take
// their instances along; every fourth service is left standing a while, its instance to expire,
// so the view keeps a small live population beside the churn (a bounded one: memory that
// follows the data is not a leak). Samples are taken after forced GC at
// each checkpoint; the heap snapshots of the first and last checkpoints are compared by constructor.
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { KeyLayout } from '@trellis/mesh-schema';
import { startEtcd } from '@trellis/testing';
import { parseBenchArgs } from './bench-cli';
import { BENCH_ADMIN_TOKEN, startBenchRegistry } from './bench-registry';
import { compareHeapSnapshots, summarizeHeapSnapshot } from './heap-snapshot';

const args = parseBenchArgs(
  {
    name: 'registry-memory',
    summary:
      "The registry's memory over a long churn of writes and reads: RSS and heap after forced GC at checkpoints, and the " +
      'heap snapshots of the first and last checkpoints compared by constructor. Needs etcd.',
  },
  {
    checkpoints: {
      type: 'string',
      default: '1000,5000,20000',
      help: 'Writes (HTTP requests that change state) at which memory is sampled.',
    },
    concurrency: { type: 'string', default: '8', help: 'Chains of churn steps running at once.' },
    'heap-snapshots': {
      type: 'boolean',
      default: false,
      help:
        'Also write heap snapshots at the first and the last checkpoint and compare them (slow; and writing one raises ' +
        'the RSS of every later sample, so the RSS column then means little).',
    },
    smoke: { type: 'boolean', default: false, help: 'Seconds, tiny sizes (checkpoints at 100 and 300 writes): what `npm test` runs.' },
    'registry-node-options': {
      type: 'string',
      default: '',
      help: "V8 flags for the registry process, e.g. '--max-semi-space-size=4' (space-separated).",
    },
    role: { type: 'string', internal: true, help: 'registry: run the registry process.' },
    'etcd-endpoints': { type: 'string', internal: true, help: "The orchestrator's etcd, for the registry process." },
    'etcd-prefix': { type: 'string', internal: true, help: 'The key prefix the registry process uses.' },
  },
);

const ADMIN_TOKEN = BENCH_ADMIN_TOKEN;
const CHECKPOINTS = (args.smoke ? '100,300' : args.checkpoints).split(',').map(Number);
const CONCURRENCY = Number(args.concurrency);

interface MemorySample {
  /** Highest RSS since the process started, before this sample's GC. */
  peakRss: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

type ToRegistry = { type: 'measure' } | { type: 'snapshot'; path: string };
type FromRegistry = { type: 'ready'; port: number } | { type: 'measured'; memory: MemorySample } | { type: 'snapshot-written' };

// ---- role: registry ----
async function registryRole(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('the registry role needs --expose-gc');
  const { registry, etcd } = await startBenchRegistry(args['etcd-endpoints']!, args['etcd-prefix']!);
  const send = (message: FromRegistry) => process.send!(message);
  process.on('message', (message: ToRegistry) => {
    if (message.type === 'measure') {
      const peakRss = process.resourceUsage().maxRSS * 1024;
      // Twice: the first pass may only queue finalizers whose objects the second frees.
      gc();
      gc();
      const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
      send({ type: 'measured', memory: { peakRss, rss, heapUsed, heapTotal, external, arrayBuffers } });
    } else {
      writeHeapSnapshot(message.path);
      send({ type: 'snapshot-written' });
    }
  });
  send({ type: 'ready', port: registry.httpPort });
  await new Promise((resolve) => process.once('SIGTERM', resolve));
  await registry.close();
  etcd.close();
  process.exit(0);
}

// ---- orchestrator ----
async function orchestrate(): Promise<void> {
  console.log(
    `registry memory: checkpoints at ${CHECKPOINTS.join(', ')} writes, ${CONCURRENCY} chains; ` +
      `${args['registry-node-options'] ? `registry node options ${args['registry-node-options']}; ` : ''}` +
      `${cpus().length} cores, load average ${loadavg()[0]!.toFixed(1)}${args.smoke ? ' (smoke)' : ''}`,
  );
  const etcd = await startEtcd();
  const etcdClient = etcd.client();
  const snapshotDir = mkdtempSync(join(tmpdir(), 'registry-memory-'));
  let registry: ChildProcess | undefined;
  try {
    registry = fork(process.argv[1]!, ['--role', 'registry', '--etcd-endpoints', etcd.endpoints[0]!, '--etcd-prefix', etcd.prefix], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: ['--expose-gc', '--enable-source-maps', ...args['registry-node-options'].split(' ').filter(Boolean)],
    });
    const child = registry;
    const ask = async <T extends FromRegistry['type']>(message: ToRegistry, answer: T): Promise<Extract<FromRegistry, { type: T }>> => {
      const reply = new Promise<Extract<FromRegistry, { type: T }>>((resolve) => {
        const onMessage = (m: FromRegistry) => {
          if (m.type !== answer) return;
          child.off('message', onMessage);
          resolve(m as Extract<FromRegistry, { type: T }>);
        };
        child.on('message', onMessage);
      });
      child.send(message);
      return reply;
    };
    const [ready] = (await Promise.race([
      once(registry, 'message'),
      once(registry, 'exit').then(([code]) => {
        throw new Error(`the registry exited (${String(code)}) before it was ready`);
      }),
    ])) as [FromRegistry & { type: 'ready' }];
    const churn = new Churn(`http://127.0.0.1:${ready.port}`);
    await churn.createAnchors();

    const rows: { writes: number; memory: MemorySample; series: number; tombstones: number }[] = [];
    // Deregistration tombstones live 600 s and the view holds them meanwhile: data with an expiry, counted beside the heap.
    const tombstones = () => etcdClient.getAll().prefix(new KeyLayout(etcd.prefix).deregistrations()).count();
    // Metric series: a label taking a service name, path or id would grow with the churn.
    const series = async () =>
      (await (await fetch(`http://127.0.0.1:${ready.port}/metrics`)).text()).split('\n').filter((l) => l && !l.startsWith('#')).length;
    rows.push({
      writes: 0,
      memory: (await ask({ type: 'measure' }, 'measured')).memory,
      series: await series(),
      tombstones: await tombstones(),
    });
    const snapshots: string[] = [];
    for (const [i, checkpoint] of CHECKPOINTS.entries()) {
      await churn.runUntil(checkpoint, CONCURRENCY);
      // Leases of the last steps expire before the sample, so what is sampled is steady state.
      await churn.waitForExpiries();
      rows.push({
        writes: churn.writes,
        memory: (await ask({ type: 'measure' }, 'measured')).memory,
        series: await series(),
        tombstones: await tombstones(),
      });
      if (args['heap-snapshots'] && (i === 0 || i === CHECKPOINTS.length - 1)) {
        const path = join(snapshotDir, `after-${checkpoint}.heapsnapshot`);
        await ask({ type: 'snapshot', path }, 'snapshot-written');
        snapshots.push(path);
      }
      console.log(`${churn.writes} writes, ${churn.reads} reads, ${churn.failures.length} failures`);
    }

    const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
    console.log('\nafter forced GC (MiB; peak RSS: the highest since the start, before that GC):');
    console.log('| writes | peak rss | rss | heap used | heap total | external | array buffers | metric series | tombstones |');
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const { writes, memory: m, series: n, tombstones: t } of rows) {
      console.log(
        `| ${writes} | ${mib(m.peakRss)} | ${mib(m.rss)} | ${mib(m.heapUsed)} | ${mib(m.heapTotal)} | ${mib(m.external)} | ${mib(m.arrayBuffers)} | ${n} | ${t} |`,
      );
    }
    if (snapshots.length === 2) {
      const [before, after] = snapshots.map((path) => summarizeHeapSnapshot(JSON.parse(readFileSync(path, 'utf8'))));
      console.log(
        `\nheap snapshot, after ${CHECKPOINTS.at(-1)} writes against after ${CHECKPOINTS[0]}: constructors that grew most (self size)`,
      );
      console.log('| constructor | count before | count after | KiB before | KiB after |');
      console.log('| --- | --- | --- | --- | --- |');
      for (const g of compareHeapSnapshots(before!, after!).slice(0, 20)) {
        console.log(
          `| ${g.name} | ${g.before.count} | ${g.after.count} | ${(g.before.size / 1024).toFixed(0)} | ${(g.after.size / 1024).toFixed(0)} |`,
        );
      }
    }
    if (churn.failures.length > 0) {
      console.error(`FAILED: ${churn.failures.length} requests failed, e.g. ${churn.failures.slice(0, 5).join('; ')}`);
      process.exitCode = 1;
    }
  } finally {
    registry?.kill('SIGTERM');
    if (registry) await once(registry, 'exit');
    rmSync(snapshotDir, { recursive: true, force: true });
    etcdClient.close();
    await etcd.close();
  }
}

const LEASE_SECONDS = 5;

/** The write/read churn against one registry; counts writes (state-changing requests) and failures. */
class Churn {
  writes = 0;
  reads = 0;
  readonly failures: string[] = [];
  private next = 0;
  private lastWriteAt = Date.now();
  private readonly auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

  constructor(private readonly base: string) {}

  async runUntil(writes: number, chains: number): Promise<void> {
    await Promise.all(
      Array.from({ length: chains }, async () => {
        while (this.writes < writes) await this.step(this.next++);
      }),
    );
  }

  async waitForExpiries(): Promise<void> {
    const wait = this.lastWriteAt + (LEASE_SECONDS + 2) * 1000 - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }

  private async step(n: number): Promise<void> {
    const name = `soak-${n}`;
    const path = `/api/v1/services/${name}`;
    const spec = (description: string) => ({
      name,
      team: `team-${n % 7}`,
      protocol: 'http',
      port: 8080,
      description,
      dependencies: [{ service: `anchor-${n % 2}` }],
    });
    const created = await this.write('POST', '/api/v1/services', spec('created'), 201);
    if (!created) return;
    const etag = created.headers.get('etag') ?? `"${((await created.json()) as { modRevision: string }).modRevision}"`;
    await this.write('PUT', path, spec(`replaced at step ${n}`), 200, { 'if-match': etag });
    const instance = (id: string) => ({ id, address: '10.0.0.1', port: 8080, platform: 'vm', ttlSeconds: LEASE_SECONDS });
    await this.write('POST', `${path}/instances`, instance(`${name}-a`), 201);
    await this.write('POST', `${path}/instances`, instance(`${name}-b`), 201);
    await this.write('PUT', `${path}/instances/${name}-a/heartbeat`, undefined, 204);
    await this.write('DELETE', `${path}/instances/${name}-b`, undefined, 204);
    for (const read of [
      path,
      `${path}/instances`,
      `${path}/history`,
      '/api/v1/services',
      `/api/v1/services?q=soak-${n % 10}`,
      '/api/v1/topology',
      `/ui/services/${name}`,
      '/ui/services',
      `/ui/services/${name}/history`,
      `/api/v1/no-such-route-${n}`, // a path nobody declared: its metric label must not be the path
    ]) {
      const res = await fetch(this.base + read);
      await res.arrayBuffer();
      this.reads++;
      if (res.status !== 200 && !(read.includes('no-such-route') && res.status === 404)) this.failures.push(`GET ${read}: ${res.status}`);
    }
    // Every fourth service stays a while, its heartbeated instance left to expire; it goes 40 steps
    // later, so about ten stand at any time. The others go at once.
    if (n % 4 !== 0) await this.write('DELETE', path, undefined, 204);
    else if (n >= 40) await this.write('DELETE', `/api/v1/services/soak-${n - 40}`, undefined, 204);
  }

  /** The two services every churned one calls; they stay. */
  async createAnchors(): Promise<void> {
    for (const name of ['anchor-0', 'anchor-1']) {
      await this.write(
        'POST',
        '/api/v1/services',
        { name, team: 'anchors', protocol: 'http', port: 8080, description: '', dependencies: [] },
        201,
      );
    }
  }

  private async write(method: string, path: string, body: unknown, expected: number, headers: Record<string, string> = {}) {
    const res = await fetch(this.base + path, {
      method,
      headers: { ...this.auth, ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    this.writes++;
    this.lastWriteAt = Date.now();
    if (res.status !== expected) {
      this.failures.push(`${method} ${path}: ${res.status} ${(await res.text()).slice(0, 200)}`);
      return undefined;
    }
    return res;
  }
}

if (args.role === 'registry') {
  registryRole().catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  orchestrate().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
