// A real process: an unhandled rejection or uncaught exception after start is
// logged as one structured line with its cause chain, and the process exits 1.
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

const ROOT = join(__dirname, '../../..');
const OUT = join(ROOT, 'node_modules/.cache/trellis-runtime-test/crash-after-start.js');

beforeAll(async () => {
  mkdirSync(join(OUT, '..'), { recursive: true });
  await build({
    entryPoints: [join(__dirname, 'fixtures/crash-after-start.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    packages: 'external',
    outfile: OUT,
    logLevel: 'error',
  });
});

function run(mode: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [OUT, mode], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('process guards installed by runMain', () => {
  it.each([
    ['rejection', 'unhandled rejection: exiting', 'prefetch failed'],
    ['exception', 'uncaught exception: exiting', 'listener failed'],
  ])('an unhandled %s is logged with its causes, then the process exits 1', async (mode, msg, message) => {
    const { code, stdout } = await run(mode);
    expect(code).toBe(1);
    const line = stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((entry) => entry['msg'] === msg);
    expect(line).toMatchObject({
      level: 60,
      app: 'crash-fixture',
      err: expect.objectContaining({ message: expect.stringContaining(message) }),
      causes: ['TypeError: Invalid URL', 'Error: input: https://m.3/cdn-cgi/access/certs'],
    });
  });
});
