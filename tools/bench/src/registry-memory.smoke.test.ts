// The registry memory tool at tiny sizes (`--smoke`: checkpoints at 100 and 300 writes), with the
// heap snapshot comparison, so the tool cannot rot. It exits non-zero when a request of the churn
// fails; the memory it prints is not looked at here (docs/reliability.md has the long runs).
import { runBenchmark } from './run-benchmark';

describe('registry-memory tool, smoke mode', () => {
  it('churns writes and reads through a registry process, samples its memory after GC and compares two heap snapshots', async () => {
    const { code, output } = await runBenchmark('registry-memory', ['--smoke', '--heap-snapshots']);
    if (code !== 0) throw new Error(`registry-memory --smoke exited with ${code}:\n${output}`);
    expect(output).toContain('| writes | peak rss | rss | heap used | heap total | external | array buffers | metric series |');
    expect(output).toMatch(/^\| [1-9]\d* \| [\d.]+ \| [\d.]+ \| [\d.]+ \|/m);
    expect(output).toContain('| constructor | count before | count after | KiB before | KiB after |');
    expect(output).not.toContain('FAILED');
  }, 600_000);
});
