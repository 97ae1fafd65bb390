// A small reader for systemd unit files: sections of `Key=Value` lines, comments
// (# ;) skipped, backslash continuations joined. Enough to check policy in tests;
// systemd-analyze remains the judge of syntax.

export type UnitFile = Map<string, Array<{ key: string; value: string }>>;

export function parseUnit(text: string): UnitFile {
  const unit: UnitFile = new Map();
  let section: Array<{ key: string; value: string }> | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) line = `${line.slice(0, -1).trimEnd()} ${lines[++i]!.trim()}`;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      section = unit.get(header[1]!) ?? [];
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf('=');
    if (!section || eq <= 0) throw new Error(`not a unit-file line: ${JSON.stringify(line)}`);
    section.push({ key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim() });
  }
  return unit;
}

/** Every value of `key` in `section`, in file order. */
export function directiveValues(unit: UnitFile, section: string, key: string): string[] {
  return (unit.get(section) ?? []).filter((d) => d.key === key).map((d) => d.value);
}

/** The absolute binaries a service runs (ExecStart, ExecStartPre, ...), prefixes like `-` or `!` removed. */
export function executables(unit: UnitFile): string[] {
  return (unit.get('Service') ?? [])
    .filter((d) => d.key.startsWith('Exec'))
    .map((d) => d.value.replace(/^[-@:+!]+/, '').split(/\s+/)[0]!)
    .filter((path) => path.startsWith('/'));
}
