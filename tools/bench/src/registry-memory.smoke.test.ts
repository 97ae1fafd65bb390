// The registry memory tool at tiny sizes (`--smoke`: checkpoints at 100 and 300 writes), with the
// heap snapshot comparison, so the tool cannot rot. It exits non-zero when a request of the churn
// fails; the memory it prints is not looked at here (docs/reliability.md has the long runs).
import { benchmarkHelp, runBenchmark } from './run-benchmark';

describe('registry-memory tool, smoke mode', () => {
  it('--help prints the usage and its options and exits 0', async () => {
    const { code, usage, options } = await benchmarkHelp('registry-memory');
    expect({ code, usage }).toEqual({ code: 0, usage: 'Usage: node tools/bench/registry-memory.mjs [options]' });
    expect(options).toEqual(expect.arrayContaining(['smoke', 'checkpoints', 'heap-snapshots', 'role', 'help']));
  }, 120_000);

  it('churns writes and reads through a registry process, samples its memory after GC and compares two heap snapshots', async () => {
    const { code, output } = await runBenchmark('registry-memory', ['--smoke', '--heap-snapshots']);
    if (code !== 0) throw new Error(`registry-memory --smoke exited with ${code}:\n${output}`);
    expect(output).toContain('| writes | peak rss | rss | heap used | heap total | external | array buffers | metric series |');
    expect(output).toMatch(/^\| [1-9]\d* \| [\d.]+ \| [\d.]+ \| [\d.]+ \|/m);
    expect(output).toContain('| constructor | count before | count after | KiB before | KiB after |');
    expect(output).not.toContain('FAILED');
  }, 600_000);
});
