// The authz benchmark at tiny sizes (`--smoke`: 2,000 requests per load, one round, 50
// misses), so the tool cannot rot. It exits non-zero when a cache-hit Check minted a
// token, a Check was decided otherwise than expected, or a miss did not mint; the
// timings it prints are not looked at.
import { runBenchmark } from './run-benchmark';

describe('authz-check benchmark, smoke mode', () => {
  it('measures the cache hit, the deny and the miss path against the echo floor', async () => {
    const { code, output } = await runBenchmark('authz-check', ['--smoke']);
    if (code !== 0) throw new Error(`authz-check --smoke exited with ${code}:\n${output}`);
    expect(output).toMatch(/^authz: 2000 Checks allowed and 2000 denied as undeclared .*tokens minted while measuring: 0$/m);
    for (const row of ['| per round, median |', '| per server CPU-second, median |', '| echo (floor) |', '| authz, miss |']) {
      expect(output).toContain(row);
    }
  }, 600_000);
});
