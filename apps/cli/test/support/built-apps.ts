// The deployables as they run on a VM: bundled with tools/build/bundle.mjs and
// started as `node main.js` with TRELLIS_* variables. Bundles go to tmp/ inside
// the workspace (so their npm imports resolve) under a per-run name, so suites
// running at once never overwrite each other's.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { build } from 'esbuild';
import { join, resolve } from 'node:path';
import { eventually as pollUntil, freePort, type TestEtcd } from '@trellis/testing';

export const WORKSPACE_ROOT = resolve(__dirname, '../../../..');

const bundled = new Map<string, string>();

/** Bundles apps/<app> once per test file; returns its main.js. */
export function bundle(app: string): string {
  const known = bundled.get(app);
  if (known) return known;
  const outDir = join(WORKSPACE_ROOT, 'tmp/test-bundles', `${app}-${process.pid}`);
  execFileSync(process.execPath, [join(WORKSPACE_ROOT, 'tools/build/bundle.mjs'), app, outDir], { cwd: WORKSPACE_ROOT, stdio: 'pipe' });
  const main = join(outDir, 'main.js');
  bundled.set(app, main);
  return main;
}

/**
 * `trellis agent` for orders-1 with no registry to reach (registering is retried in
 * the background): what the certificate and bootstrap tests start before their own flags.
 */
export function unregisteredOrdersAgentArgs(port: number): string[] {
  return [
    'agent',
    '--service=orders',
    '--instance-id=orders-1',
    '--address=127.0.0.1',
    `--port=${port}`,
    '--health-check=none',
    '--registry=http://127.0.0.1:9',
  ];
}

/** Bundles a script of this directory (a child process's code); npm packages stay external. */
export async function bundleScript(script: 'xds-caller'): Promise<string> {
  const outfile = join(WORKSPACE_ROOT, 'tmp/test-bundles', `${script}-${process.pid}`, 'main.js');
  await build({
    entryPoints: [join(__dirname, `${script}.ts`)],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    packages: 'external',
    tsconfig: join(WORKSPACE_ROOT, 'tsconfig.base.json'),
    outfile,
    logLevel: 'error',
  });
  bundled.set(script, outfile);
  return outfile;
}

/** Deletes this file's bundles (afterAll). */
export function removeBundles(): void {
  for (const main of bundled.values()) rmSync(resolve(main, '..'), { recursive: true, force: true });
  bundled.clear();
}

const running = new Set<ChildProcess>();
process.on('exit', () => running.forEach((child) => child.kill('SIGKILL')));

/** A started process, its recent output, and a clean stop. */
export class AppProcess {
  private output = '';
  private listeners: Array<() => void> = [];
  readonly exited: Promise<number | null>;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    const collect = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString('utf8')).slice(-65_536);
      this.listeners.forEach((l) => l());
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    this.exited = new Promise((resolve) => child.once('exit', (code) => (running.delete(child), resolve(code))));
  }

  static start(name: string, main: string, args: string[], env: NodeJS.ProcessEnv): AppProcess {
    const child = spawn(process.execPath, ['--enable-source-maps', main, ...args], {
      cwd: WORKSPACE_ROOT,
      env: { PATH: process.env['PATH'], TRELLIS_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    return new AppProcess(name, child);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  recentOutput(lines = 30): string {
    return `--- ${this.name}\n${this.output.split('\n').slice(-lines).join('\n')}`;
  }

  /** The first output line matching `pattern`, now or later. */
  waitForLine(pattern: RegExp, timeoutMs = 60_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const line = this.output.split('\n').find((l) => pattern.test(l));
        if (line === undefined) return false;
        done();
        resolve(line);
        return true;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: no line matching ${pattern} within ${timeoutMs} ms\n${this.recentOutput()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.listeners = this.listeners.filter((l) => l !== listener);
      };
      const listener = () => void check();
      this.listeners.push(listener);
      check();
    });
  }

  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * `eventually` from @trellis/testing with this suite's defaults: a probe that throws (an app not yet listening) is
 * "not yet", polled every 200 ms, and a timeout shows the processes' recent output.
 */
export function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 60_000,
  processes: AppProcess[] = [],
): Promise<T> {
  return pollUntil(what, probe, timeoutMs, {
    intervalMs: 200,
    retryErrors: true,
    diagnose: () => processes.map((p) => p.recentOutput()).join('\n'),
  });
}

/** A control plane as local development runs it (insecure xDS clients allowed, /bootstrap open) on free ports, once ready. */
export async function startDevControlPlane(etcd: TestEtcd): Promise<{ process: AppProcess; xdsAddress: string; httpUrl: string }> {
  const [xdsPort, httpPort] = [await freePort(), await freePort()];
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const controlPlane = AppProcess.start('control-plane', bundle('control-plane'), [], {
    TRELLIS_HOST: '127.0.0.1',
    TRELLIS_ETCD_ENDPOINTS: etcd.endpoints.join(','),
    TRELLIS_ETCD_PREFIX: etcd.prefix,
    TRELLIS_XDS_PORT: String(xdsPort),
    TRELLIS_HTTP_PORT: String(httpPort),
    TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: 'true',
  });
  await eventually('control plane ready', async () => (await fetch(`${httpUrl}/readyz`)).ok || undefined, 60_000, [controlPlane]);
  return { process: controlPlane, xdsAddress: `127.0.0.1:${xdsPort}`, httpUrl };
}
