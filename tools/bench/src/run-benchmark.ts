// Runs a benchmark's launcher (tools/bench/<name>.mjs) as a child process, for the smoke tests.
import { spawn } from 'node:child_process';
import { join } from 'node:path';

export const WORKSPACE_ROOT = join(__dirname, '../../..');

export function runBenchmark(name: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(WORKSPACE_ROOT, `tools/bench/${name}.mjs`), ...args], { cwd: WORKSPACE_ROOT });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** `<name>.mjs --help`: its exit code and what it printed (the usage and every option, from its option table). */
export async function benchmarkHelp(name: string): Promise<{ code: number | null; usage: string | undefined; options: string[] }> {
  const { code, output } = await runBenchmark(name, ['--help']);
  return {
    code,
    usage: /^Usage: .*$/m.exec(output)?.[0],
    options: [...output.matchAll(/^ {2}--(?:\[no-\])?([a-z0-9-]+)/gm)].map((m) => m[1]!),
  };
}
