// A benchmark's command line: its option table is the one place that names, types, defaults and
// explains each option; parseArgs reads the arguments from it and `--help` prints it.
import { parseArgs } from 'node:util';

/** One option: what parseArgs needs, and the sentence `--help` prints for it. */
export type BenchOption = ({ type: 'string'; default?: string } | { type: 'boolean'; default?: boolean }) & {
  help: string;
  /** Set by the benchmark itself for the processes it starts (`--role …`): listed apart. */
  internal?: true;
};

export interface BenchCommand {
  /** The launcher's name: tools/bench/<name>.mjs. */
  name: string;
  /** What the benchmark measures, in a sentence or two. */
  summary: string;
  /** `--no-<option>` turns a boolean option off (e.g. --no-status-drain). */
  allowNegative?: boolean;
}

const HELP_OPTION = { type: 'boolean', default: false, help: 'Print this help and exit.' } as const satisfies BenchOption;
const WIDTH = 100;

/**
 * Parses `argv` (the process's own arguments by default) against `options`. `--help` prints the
 * usage and every option, then exits 0; an unknown option or a missing value prints what is wrong
 * and exits 2, as command-line tools do.
 */
export function parseBenchArgs<const O extends Record<string, BenchOption>>(
  command: BenchCommand,
  options: O,
  argv: string[] = process.argv.slice(2),
): ParsedOptions<O> {
  const all = { ...options, help: HELP_OPTION };
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args: argv, options: all, allowNegative: command.allowNegative ?? false, strict: true }));
  } catch (err) {
    process.stderr.write(`${command.name}: ${(err as Error).message}\nRun node tools/bench/${command.name}.mjs --help for the options.\n`);
    process.exit(2);
  }
  if (values['help']) {
    process.stdout.write(benchHelp(command, options));
    process.exit(0);
  }
  return values as ParsedOptions<O>;
}

/** What parseArgs returns for the table: strings and booleans, present when given or defaulted. */
export type ParsedOptions<O extends Record<string, BenchOption>> = {
  -readonly [K in keyof O]: (O[K]['type'] extends 'string' ? string : boolean) | (O[K] extends { default: unknown } ? never : undefined);
};

/** The text `--help` prints. */
export function benchHelp(command: BenchCommand, options: Record<string, BenchOption>): string {
  const entries: Array<[string, BenchOption]> = Object.entries({ ...options, help: HELP_OPTION });
  const labelOf = ([name, option]: [string, BenchOption]) => {
    if (option.type === 'string') return `--${name} <value>`;
    // Worth naming only where the option is on unless turned off.
    return command.allowNegative && option.default === true ? `--[no-]${name}` : `--${name}`;
  };
  const labelWidth = Math.min(36, Math.max(...entries.map((entry) => labelOf(entry).length)) + 2);
  const describe = (entry: [string, BenchOption]) => {
    const [, option] = entry;
    const noDefault = option.default === undefined || option.default === '' || option.default === false;
    // "(default: x)" is one unit, never broken over two lines.
    const lines = wrap([...words(option.help), ...(noDefault ? [] : [`(default: ${String(option.default)})`])], WIDTH - 2 - labelWidth);
    const label = labelOf(entry);
    const first =
      label.length < labelWidth ? `  ${label.padEnd(labelWidth)}${lines[0]}` : `  ${label}\n  ${' '.repeat(labelWidth)}${lines[0]}`;
    return [first, ...lines.slice(1).map((line) => `  ${' '.repeat(labelWidth)}${line}`)].join('\n');
  };
  const shown = entries.filter(([, option]) => !option.internal);
  const internal = entries.filter(([, option]) => option.internal);
  return [
    `Usage: node tools/bench/${command.name}.mjs [options]`,
    '',
    ...wrap(words(command.summary), WIDTH),
    '',
    'Options:',
    ...shown.map(describe),
    ...(internal.length ? ['', 'Set by the benchmark for the processes it starts:', ...internal.map(describe)] : []),
    '',
  ].join('\n');
}

const words = (text: string): string[] => text.split(/\s+/).filter(Boolean);

/** Lines of at most `width` characters (a longer word gets a line of its own). */
function wrap(units: string[], width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const unit of units) {
    if (line && line.length + 1 + unit.length > width) {
      lines.push(line);
      line = unit;
    } else {
      line = line ? `${line} ${unit}` : unit;
    }
  }
  return [...lines, line];
}
