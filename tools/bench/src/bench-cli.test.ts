import { benchHelp, parseBenchArgs, type BenchOption } from './bench-cli';

const command = { name: 'example', summary: 'What the example measures.', allowNegative: true };
const options = {
  rounds: { type: 'string', default: '5', help: 'Rounds, each timed.' },
  'cpu-prof': { type: 'string', help: 'Write a CPU profile into this directory.' },
  drain: { type: 'boolean', default: true, help: 'Wait for the backlog between rounds. '.repeat(6).trim() },
  smoke: { type: 'boolean', default: false, help: 'Tiny sizes.' },
  role: { type: 'string', internal: true, help: 'Which process to be.' },
} as const satisfies Record<string, BenchOption>;

describe('parseBenchArgs', () => {
  it('reads the arguments against the table, with its defaults', () => {
    expect({ ...parseBenchArgs(command, options, ['--rounds', '7', '--no-drain']) }).toEqual({
      rounds: '7',
      drain: false,
      smoke: false,
      help: false,
    });
    expect({ ...parseBenchArgs(command, options, ['--cpu-prof', '/tmp/p', '--smoke']) }).toMatchObject({
      rounds: '5',
      'cpu-prof': '/tmp/p',
      drain: true,
      smoke: true,
    });
  });
});

describe('benchHelp', () => {
  const help = benchHelp(command, options);
  const lines = help.split('\n');

  it('prints the usage, the summary and every option with its help and default', () => {
    expect(lines.slice(0, 3)).toEqual(['Usage: node tools/bench/example.mjs [options]', '', 'What the example measures.']);
    expect(help).toMatch(/^ {2}--rounds <value> +Rounds, each timed\. \(default: 5\)$/m);
    expect(help).toMatch(/^ {2}--cpu-prof <value> +Write a CPU profile into this directory\.$/m);
    expect(help).toMatch(/^ {2}--smoke +Tiny sizes\.$/m);
    expect(help).toMatch(/^ {2}--help +Print this help and exit\.$/m);
  });

  it('names --no-<option> where an option is on by default, and wraps long help under its column', () => {
    const at = lines.findIndex((line) => line.startsWith('  --[no-]drain '));
    expect(at).toBeGreaterThan(0);
    expect(lines[at + 1]).toMatch(/^ {10,}\S/);
    expect(help).toContain('(default: true)');
    expect(Math.max(...lines.map((line) => line.length))).toBeLessThanOrEqual(100);
  });

  it('lists the options the benchmark sets for its own processes apart, after the others', () => {
    const apart = lines.indexOf('Set by the benchmark for the processes it starts:');
    expect(apart).toBeGreaterThan(lines.findIndex((line) => line.startsWith('  --help')));
    expect(lines.findIndex((line) => line.startsWith('  --role <value>'))).toBeGreaterThan(apart);
  });
});
