// The deployables run as processes from the deploy files' settings: apps bundled with
// tools/build/bundle.mjs (as their images hold them), started with an exact environment,
// their output kept for failure messages.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { eventually as pollUntil } from '@trellis/testing';
import { WORKSPACE_ROOT } from './workspace';

/** apps/<app> bundled under tmp/ (so its npm imports resolve), once per test file; remove with removeBundles(). */
export function bundleApp(app: string): string {
  const out = join(WORKSPACE_ROOT, 'tmp/test-bundles', `${app}-deploy-${process.pid}`);
  execFileSync(process.execPath, [join(WORKSPACE_ROOT, 'tools/build/bundle.mjs'), app, out], { cwd: WORKSPACE_ROOT, stdio: 'pipe' });
  bundled.add(out);
  return join(out, 'main.js');
}
const bundled = new Set<string>();

export function removeBundles(): void {
  for (const dir of bundled) rmSync(dir, { recursive: true, force: true });
  bundled.clear();
}

const started = new Set<Proc>();
process.on('exit', () => started.forEach((p) => p.kill()));

/** A started Node script or bundle: its recent output, its exit, a clean stop. */
export class Proc {
  output = '';
  readonly exited: Promise<number | null>;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    const keep = (d: Buffer) => (this.output = (this.output + d.toString()).slice(-16_384));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', resolve));
    void this.exited.then(() => started.delete(this));
  }

  /** `node main args…` with only PATH and `env` in its environment. */
  static start(name: string, main: string, args: string[], env: Record<string, string>): Proc {
    const proc = new Proc(
      name,
      spawn(process.execPath, [main, ...args], { env: { PATH: process.env['PATH'], ...env }, stdio: ['ignore', 'pipe', 'pipe'] }),
    );
    started.add(proc);
    return proc;
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }

  /** SIGTERM, then SIGKILL after 15 s. */
  async stop(): Promise<void> {
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(timer);
  }

  static async stopAll(): Promise<void> {
    await Promise.all([...started].map((p) => p.stop()));
  }
}

/**
 * `eventually` from @trellis/testing for processes under test: a probe that throws (a port not yet listening) is
 * "not yet", polled every 250 ms, and a timeout shows the watched processes' output.
 */
export function eventually<T>(what: string, probe: () => Promise<T | undefined | false>, watched: Proc[], timeoutMs = 60_000): Promise<T> {
  return pollUntil(what, probe, timeoutMs, {
    intervalMs: 250,
    retryErrors: true,
    diagnose: () => watched.map((p) => `--- ${p.name}\n${p.output.slice(-2000)}`).join('\n'),
  });
}

/** GET url answers 2xx. */
export async function answersOk(url: string): Promise<boolean> {
  return (await fetch(url, { signal: AbortSignal.timeout(5_000) })).ok;
}
