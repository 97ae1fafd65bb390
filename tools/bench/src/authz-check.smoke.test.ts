// The authz benchmark at tiny sizes (`--smoke`: 2,000 requests per load, one round, 50
// misses), so the tool cannot rot. It exits non-zero when a cache-hit Check minted a
// token, a Check was decided otherwise than expected, or a miss did not mint; the
// timings it prints are not looked at.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchmarkHelp, runBenchmark } from './run-benchmark';

describe('authz-check benchmark, smoke mode', () => {
  it('--help prints the usage and its options and exits 0', async () => {
    const { code, usage, options } = await benchmarkHelp('authz-check');
    expect({ code, usage }).toEqual({ code: 0, usage: 'Usage: node tools/bench/authz-check.mjs [options]' });
    expect(options).toEqual(expect.arrayContaining(['smoke', 'requests', 'floor', 'authz-env', 'role', 'help']));
  }, 120_000);

  it('measures the cache hit, the deny and the miss path against the echo floor', async () => {
    const { code, output } = await runBenchmark('authz-check', ['--smoke']);
    if (code !== 0) throw new Error(`authz-check --smoke exited with ${code}:\n${output}`);
    expect(output).toMatch(/^authz: 2000 Checks allowed and 2000 denied as undeclared .*tokens minted while measuring: 0$/m);
    for (const row of ['| per round, median |', '| per server CPU-second, median |', '| echo (floor) |', '| authz, miss |']) {
      expect(output).toContain(row);
    }
  }, 600_000);

  it("runs the diagnostic floors inside authz's process, answering its bytes, and writes its heap profile", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'authz-bench-heap-'));
    try {
      const { code, output } = await runBenchmark('authz-check', [
        '--smoke',
        '--floor',
        'in-process',
        '--alloc-profile',
        '--heap-profile-dir',
        dir,
      ]);
      if (code !== 0) throw new Error(`authz-check --smoke --floor in-process exited with ${code}:\n${output}`);
      const answers =
        /^authz answers: OK \(with the token header\) (\d+) bytes, deny (\d+) bytes; the floors: (\d+) and (\d+) bytes$/m.exec(output);
      expect(answers).not.toBeNull();
      expect([answers![3], answers![4]]).toEqual([answers![1], answers![2]]);
      // One process served the floors and authz: 4 loads of 2,000.
      expect(output).toMatch(/^authz: [\d.]+ KiB allocated per request \(8000 requests, sampled\)$/m);
      expect(existsSync(join(dir, 'authz.heapprofile'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);

  it("runs the diagnostic floors in a worker thread of authz's process, answering its bytes", async () => {
    const { code, output } = await runBenchmark('authz-check', ['--smoke', '--floor', 'in-worker']);
    if (code !== 0) throw new Error(`authz-check --smoke --floor in-worker exited with ${code}:\n${output}`);
    const answers = /^authz answers: OK \(with the token header\) (\d+) bytes, deny (\d+) bytes; the floors: (\d+) and (\d+) bytes$/m.exec(
      output,
    );
    expect(answers).not.toBeNull();
    expect([answers![3], answers![4]]).toEqual([answers![1], answers![2]]);
    expect(output).toMatch(/^authz: 2000 Checks allowed and 2000 denied as undeclared .*tokens minted while measuring: 0$/m);
  }, 600_000);
});
