// Child processes of the local mesh: started with their own environment, their
// output prefixed and kept, stopped with SIGTERM (then SIGKILL after a grace period).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** The last lines it printed, for error messages and tests. */
  readonly recentOutput: string[];
  readonly exited: Promise<number | null>;
  /** Resolves with the first matching line (already printed or to come); rejects if the process exits first or time runs out. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Where each output line goes; defaults to stdout with a `[name]` prefix. */
  onLine?: (name: string, line: string) => void;
}

const KEEP_LINES = 200;

/** Children still running, oldest first; killed if this process exits without stopping them (a crash, process.exit). */
const running = new Map<ChildProcess, ManagedProcess>();
process.once('exit', () => {
  for (const child of running.keys()) child.kill('SIGKILL');
});

let stoppingAll: Promise<void> | undefined;

/**
 * Stops every child still running, newest first (apps before the stores they use), and
 * refuses to start more: a signal during startup must not leave a half-started mesh behind,
 * and the children are detached, so a signal to our process group never reaches them.
 */
export function stopAllProcesses(): Promise<void> {
  stoppingAll ??= (async () => {
    for (const managed of [...running.values()].reverse()) await managed.stop();
  })();
  return stoppingAll;
}

export function startProcess(options: StartOptions): ManagedProcess {
  if (stoppingAll) throw new Error(`not starting ${options.name}: the local mesh is stopping`);
  const child = spawn(options.command, options.args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: a terminal's Ctrl-C reaches only the local mesh, which then
    // stops the apps before the stores they use, instead of every process at once.
    detached: true,
  });
  child.once('exit', () => running.delete(child));
  const recentOutput: string[] = [];
  const lineWatchers = new Set<(line: string) => void>();
  const onLine = options.onLine ?? ((name, line) => process.stdout.write(`[${name}] ${line}\n`));
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream! }).on('line', (line) => {
      recentOutput.push(line);
      if (recentOutput.length > KEEP_LINES) recentOutput.shift();
      onLine(options.name, line);
      for (const watch of lineWatchers) watch(line);
    });
  }
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', (err) => {
      recentOutput.push(`failed to start ${options.command}: ${err.message}`);
      resolve(-1);
    });
  });

  const waitForLine = (pattern: RegExp, timeoutMs = 60_000) =>
    new Promise<string>((resolve, reject) => {
      const printed = recentOutput.find((line) => pattern.test(line));
      if (printed !== undefined) return resolve(printed);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        lineWatchers.delete(watch);
        settle();
      };
      const watch = (line: string) => pattern.test(line) && done(() => resolve(line));
      const timer = setTimeout(
        () =>
          done(() =>
            reject(new Error(`${options.name}: no line matching ${pattern} after ${timeoutMs} ms:\n${recentOutput.slice(-20).join('\n')}`)),
          ),
        timeoutMs,
      );
      lineWatchers.add(watch);
      void exited.then((code) =>
        done(() => reject(new Error(`${options.name} exited with ${code}:\n${recentOutput.slice(-20).join('\n')}`))),
      );
    });

  const managed: ManagedProcess = {
    name: options.name,
    child,
    recentOutput,
    exited,
    waitForLine,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(killer);
    },
  };
  if (child.exitCode === null) running.set(child, managed);
  return managed;
}

/** Polls `check` until it resolves true; fails early if the process exits. */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  options: { process?: ManagedProcess; timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  // Generous: a process that exits fails the wait at once; a slow (loaded) machine should not.
  const { timeoutMs = 60_000, intervalMs = 100 } = options;
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void options.process?.exited.then((code) => (exitCode = code));
  while (Date.now() < deadline) {
    if (exitCode !== undefined) {
      throw new Error(`${what}: ${options.process!.name} exited with ${exitCode}:\n${options.process!.recentOutput.slice(-20).join('\n')}`);
    }
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  const output = options.process ? `\n${options.process.recentOutput.slice(-20).join('\n')}` : '';
  throw new Error(`${what}: not ready after ${timeoutMs} ms${output}`);
}

export async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  return res.ok;
}
