// The in-process change-path tool at tiny sizes (`--smoke`: 40 services, 30 streams, 3 rounds), so it
// cannot rot. It exits non-zero when an affected stream misses its new clusters or another stream gets
// some; the times it prints are not looked at here.
import { runBenchmark } from './run-benchmark';

describe('xds-change-path tool, smoke mode', () => {
  it('changes hub and pushes the new clusters to exactly its callers’ streams, in process', async () => {
    const { code, output } = await runBenchmark('xds-change-path', ['--smoke']);
    if (code !== 0) throw new Error(`xds-change-path --smoke exited with ${code}:\n${output}`);
    expect(output).toContain('40 services, 30 streams (10 affected)');
    expect(output).toMatch(/to last CDS: CPU median [\d.]+ ms/);
  }, 300_000);
});
