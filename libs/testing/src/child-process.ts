// A server process owned by a test suite: started, stopped and restarted on
// demand, and always killed when the test process exits so nothing leaks.
import { readFile } from 'node:fs/promises';
import { spawn, type ChildProcess } from 'node:child_process';

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

/**
 * 'exit' hooks do not run when the test process is killed (a jest worker gets
 * SIGTERM or SIGKILL). A tiny shell reading a pipe from us sees EOF when we die
 * however we die, and kills the server then; it is killed itself when the server exits.
 */
function watchOverParent(child: ChildProcess): void {
  // `read` is a shell builtin: it returns only at EOF (we never write), so no extra process.
  const watchdog = spawn('/bin/sh', ['-c', 'read -r _; kill -KILL "$0" 2>/dev/null', String(child.pid)], {
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  watchdog.on('error', () => undefined); // no /bin/sh: the exit hook still covers normal exits
  watchdog.unref();
  (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  child.once('exit', () => {
    watchdog.kill('SIGKILL');
    watchdog.stdin?.destroy();
  });
}

export class ManagedProcess {
  private child: ChildProcess | undefined;
  private output = '';

  constructor(
    readonly name: string,
    private readonly command: string,
    private readonly args: string[],
  ) {}

  get running(): boolean {
    return this.child !== undefined;
  }

  /** The last few KiB of the process's output, for error messages. */
  recentOutput(): string {
    return this.output.slice(-4096);
  }

  start(): void {
    if (this.child) return;
    installExitHook();
    const child = spawn(this.command, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const collect = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString('utf8')).slice(-16_384);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.once('exit', () => {
      running.delete(child);
      if (this.child === child) this.child = undefined;
    });
    child.once('error', (err) => {
      this.output += `\nspawn error: ${err.message}`;
    });
    running.add(child);
    this.child = child;
    if (child.pid !== undefined) watchOverParent(child);
  }

  /** Sends `signal` (SIGSTOP/SIGCONT freeze and thaw it); false when it is not running. */
  signal(signal: NodeJS.Signals): boolean {
    return this.child?.kill(signal) ?? false;
  }

  /**
   * Freezes the process and resolves once the kernel reports it stopped (a
   * signal is delivered asynchronously: a request sent right after kill() could
   * still be answered). Linux reads /proc; elsewhere it waits briefly.
   */
  async freeze(): Promise<void> {
    const pid = this.child?.pid;
    if (pid === undefined || !this.signal('SIGSTOP')) throw new Error(`${this.name} is not running`);
    const deadline = Date.now() + 5_000;
    for (;;) {
      let state: string | undefined;
      try {
        // "pid (comm) S …": the state follows the last ')'.
        const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
        state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      } catch {
        await new Promise((r) => setTimeout(r, 100)); // no /proc: give the signal a moment
        return;
      }
      if (state === 'T' || state === 't') return;
      if (Date.now() > deadline) throw new Error(`${this.name} did not stop within 5 s of SIGSTOP (state ${state})`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    const child = this.child;
    if (!child) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}

/** Polls `probe` until it returns true; fails with the process output after `timeoutMs` (generous: a loaded machine starts servers slowly; an exit fails at once). */
export async function waitUntil(what: string, probe: () => Promise<boolean>, proc: ManagedProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (!proc.running) throw new Error(`${what}: ${proc.name} exited before it became ready. Output:\n${proc.recentOutput()}`);
    if (Date.now() > deadline) throw new Error(`${what}: ${proc.name} not ready after ${timeoutMs} ms. Output:\n${proc.recentOutput()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A port from freePort() can be taken by another process before the server
 * binds it (suites start servers in parallel): start again on fresh ports.
 */
export async function withPortRetry<T>(startOnFreshPorts: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnFreshPorts();
    } catch (err) {
      if (attempt >= attempts || !/address already in use/i.test((err as Error).message)) throw err;
    }
  }
}
