// How every inspection command prints: a table by default, `-o json` or `-o yaml`
// for machines (the whole objects, not the table's columns).
import { Option } from 'commander';
import { stringify } from 'yaml';

export type OutputFormat = 'table' | 'json' | 'yaml';

/** An error the user can act on: printed without a stack, with its exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export function outputOption(extra: string[] = []): Option {
  return new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml', ...extra]).default('table');
}

export interface Column<T> {
  header: string;
  value: (row: T) => string | number | boolean | undefined;
}

/** Prints `data` as JSON/YAML, or `rows` as an aligned table with the given columns. */
export function print<T>(format: string, data: unknown, rows: readonly T[], columns: readonly Column<T>[], out = process.stdout): void {
  if (format === 'json') return void out.write(JSON.stringify(data, null, 2) + '\n');
  if (format === 'yaml') return void out.write(stringify(data));
  out.write(table(rows, columns));
}

export function table<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = rows.map((row) => columns.map((c) => cell(c.value(row))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!)))
      .join('   ')
      .trimEnd() + '\n';
  return line(columns.map((c) => c.header)) + cells.map(line).join('');
}

function cell(value: string | number | boolean | undefined): string {
  if (value === undefined || value === '') return '-';
  return String(value).replace(/\s+/g, ' ');
}

/** "3m ago" style ages for tables. */
export function age(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}
