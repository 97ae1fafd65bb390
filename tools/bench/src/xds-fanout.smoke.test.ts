// The fan-out benchmark at tiny sizes (`--smoke`: 40 services, 30 streams, 2 rounds, every
// profile), so the tool cannot rot. It exits non-zero when a push is missing, extra or stale;
// the timings it prints are not looked at. A second run ages the control plane's connections out
// so that the simulated Envoys reconnect during the rounds.
import { benchmarkHelp, runBenchmark } from './run-benchmark';
const PROFILES = ['clusters', 'envoy', 'delta'];

describe('xds-fanout benchmark, smoke mode', () => {
  it('--help prints the usage and its options and exits 0', async () => {
    const { code, usage, options } = await benchmarkHelp('xds-fanout');
    expect({ code, usage }).toEqual({ code: 0, usage: 'Usage: node tools/bench/xds-fanout.mjs [options]' });
    expect(options).toEqual(expect.arrayContaining(['smoke', 'profile', 'status-drain', 'debounce-ms', 'role', 'help']));
  }, 120_000);

  it('reaches every affected stream exactly as it should, in every profile, on the floor and the control plane', async () => {
    const { code, output } = await runBenchmark('xds-fanout', ['--smoke']);
    if (code !== 0) throw new Error(`xds-fanout --smoke exited with ${code}:\n${output}`);
    for (const profile of PROFILES) {
      for (const server of ['floor', 'control plane']) {
        expect(output).toMatch(new RegExp(`^${server} \\[${profile}\\]: 20/20 affected streams reached, 0 missing.* — correct$`, 'm'));
      }
      // The report names what it measures next to latency.
      expect(output).toMatch(new RegExp(`\\[${profile}\\] hub write → push received`));
    }
    expect(output).toMatch(/^server peak RSS, MiB/m);
    // When the peak came and what it was made of, for each server.
    expect(output).toMatch(/^ {2}sampled, storm and first push +\d+ = \d+ heap \+ \d+ ext \(\d+ AB\) \+ -?\d+ rest +\d+ = \d+ heap/m);
    expect(output).toMatch(/^ {2}sampled, after it \(to the last round\) +\d+ = /m);
    expect(output).toMatch(/^resource bytes per change/m);
    // The idle part per change as what it is made of: a rate and each server's own round length.
    expect(output).toMatch(/^ {4}= idle CPU-ms per second +\d+\.\d +\d+\.\d +\d+\.\d+×$/m);
    expect(output).toMatch(/^ {4}× seconds per change +\d+\.\d +\d+\.\d +—$/m);
    // The first push's server CPU by thread group (Linux, where the tests run).
    expect(output).toMatch(/^ {4}of which its main thread +\d+\.\d\d +\d+\.\d\d /m);
    expect(output).toMatch(/^ {4}V8's platform threads \(GC helpers, compiler\) +\d+\.\d\d +\d+\.\d\d /m);
  }, 600_000);

  it("with --floor in-process, serves the floor's streams from a control-plane process, every stream still judged", async () => {
    const { code, output } = await runBenchmark('xds-fanout', ['--smoke', '--floor', 'in-process', '--floor-heap-mib', '4']);
    if (code !== 0) throw new Error(`xds-fanout --smoke --floor in-process exited with ${code}:\n${output}`);
    expect(output).toMatch(/floor \(grpc-js in a control-plane process\) \+ 4 MiB kept/);
    for (const profile of PROFILES) {
      for (const server of ['floor', 'control plane']) {
        expect(output).toMatch(new RegExp(`^${server} \\[${profile}\\]: 20/20 affected streams reached, 0 missing.* — correct$`, 'm'));
      }
    }
  }, 600_000);

  it('with --connect-concurrency, opens the connections one at a time as each is answered, every stream still judged', async () => {
    const { code, output } = await runBenchmark('xds-fanout', ['--smoke', '--connect-concurrency', '1']);
    if (code !== 0) throw new Error(`xds-fanout --smoke --connect-concurrency 1 exited with ${code}:\n${output}`);
    expect(output).toMatch(/ over 3 connections \(at most 1 being set up at once\) /);
    for (const profile of PROFILES) {
      for (const server of ['floor', 'control plane']) {
        expect(output).toMatch(new RegExp(`^${server} \\[${profile}\\]: 20/20 affected streams reached, 0 missing.* — correct$`, 'm'));
      }
    }
  }, 600_000);

  it('reconnects and re-subscribes as Envoy does when the control plane sends GOAWAY at its max connection age, every round still judged', async () => {
    // Connections aged 1 s (±10 %) and cut at the GOAWAY: each profile's streams are cut while it runs, and again
    // after each reconnect. The status backlog is not waited for (every reconnect adds records to write). Every
    // first request, reconnects' too, carries a node with an Envoy's extras (--node-extensions).
    const { code, output } = await runBenchmark('xds-fanout', [
      '--smoke',
      '--node-extensions',
      '40',
      '--max-connection-age-ms',
      '1000',
      '--max-connection-age-grace-ms',
      '0',
      '--no-status-drain',
    ]);
    if (code !== 0) throw new Error(`xds-fanout --smoke with a 1 s max connection age exited with ${code}:\n${output}`);
    for (const profile of PROFILES) {
      const summary = new RegExp(
        `^control plane \\[${profile}\\]: 20/20 affected streams reached, 0 missing, 0 extra to affected, 0 to unaffected, ` +
          `0 without a new cluster version; (\\d+) streams reconnected — correct$`,
        'm',
      ).exec(output);
      expect(summary).not.toBeNull();
      expect(Number(summary![1])).toBeGreaterThan(0);
      // The floor sets no connection age: its streams stay.
      expect(output).toMatch(new RegExp(`^floor \\[${profile}\\]: 20/20 .*; 0 streams reconnected — correct$`, 'm'));
    }
  }, 600_000);
});
