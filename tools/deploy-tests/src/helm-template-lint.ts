// A structural lint for Helm chart templates, for machines without Helm (where
// `helm lint` / `helm template` are the real checks; deploy/README.md shows them).
// It catches what breaks a render most often: unbalanced actions or blocks, an
// `include` of a template nobody defines, and `.Values.x.y` paths that the chart's
// values.yaml does not have (a typo renders as an empty string, silently), and a
// whole number quoted without `int64`: Helm reads values as float64, so a value
// of 1000000 or more renders as "1e+06" and the app refuses the setting
// (`float64` says a fraction is meant, as for a sampling percentage).

export interface TemplateProblem {
  file: string;
  message: string;
}

const OPENERS = new Set(['if', 'range', 'with', 'define', 'block']);

/** The text of every `{{ … }}` action with its trim markers and comments removed. */
export function actions(template: string): string[] {
  const found: string[] = [];
  let at = 0;
  for (;;) {
    const open = template.indexOf('{{', at);
    if (open < 0) break;
    const close = template.indexOf('}}', open + 2);
    if (close < 0) throw new Error(`unclosed "{{" at offset ${open}`);
    const body = template
      .slice(open + 2, close)
      .replace(/^-\s*/, '')
      .replace(/\s*-$/, '')
      .trim();
    if (!body.startsWith('/*')) found.push(body);
    at = close + 2;
  }
  return found;
}

export function definedTemplates(template: string): string[] {
  return actions(template).flatMap((a) => [...a.matchAll(/^define\s+"([^"]+)"/g)].map((m) => m[1]!));
}

export function lintTemplates(files: Record<string, string>, values: unknown): TemplateProblem[] {
  const problems: TemplateProblem[] = [];
  const defined = new Set<string>();
  const parsed = new Map<string, string[]>();
  for (const [file, text] of Object.entries(files)) {
    try {
      const list = actions(text);
      parsed.set(file, list);
      for (const name of definedTemplates(text)) defined.add(name);
    } catch (err) {
      problems.push({ file, message: (err as Error).message });
    }
  }
  for (const [file, list] of parsed) {
    let depth = 0;
    for (const action of list) {
      const keyword = /^([a-z]+)\b/.exec(action)?.[1];
      if (keyword && OPENERS.has(keyword)) depth++;
      else if (keyword === 'end') depth--;
      if (depth < 0) {
        problems.push({ file, message: 'an "end" closes no block' });
        depth = 0;
      }
      for (const m of action.matchAll(/\b(?:include|template)\s+"([^"]+)"/g)) {
        if (!defined.has(m[1]!)) problems.push({ file, message: `includes "${m[1]}", which no template defines` });
      }
      for (const m of action.matchAll(/(?:^|[\s($])\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
        const path = m[1]!.slice(1).split('.');
        const problem = missingValue(values, path) ?? quotedWithoutInt(action, valueAt(values, path));
        if (problem) problems.push({ file, message: `.Values.${path.join('.')}: ${problem}` });
      }
    }
    if (depth !== 0) problems.push({ file, message: `${depth} block(s) not closed with "end"` });
  }
  return problems;
}

/** Why `path` cannot be read from `values`, or undefined when it can (free-form maps and null leaves accept anything). */
function missingValue(values: unknown, path: string[]): string | undefined {
  let current: unknown = values;
  for (let i = 0; i < path.length; i++) {
    if (current === null || current === undefined) return undefined;
    if (typeof current !== 'object' || Array.isArray(current)) return `"${path.slice(0, i).join('.')}" is not a map in values.yaml`;
    const map = current as Record<string, unknown>;
    if (!(path[i]! in map)) return Object.keys(map).length === 0 ? undefined : `values.yaml has no "${path.slice(0, i + 1).join('.')}"`;
    current = map[path[i]!];
  }
  return undefined;
}

/** The default of `path` in values.yaml (undefined when it has none). */
function valueAt(values: unknown, path: string[]): unknown {
  let current: unknown = values;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

function quotedWithoutInt(action: string, value: unknown): string | undefined {
  if (!Number.isInteger(value) || !/\|\s*quote\b/.test(action) || /\|\s*(?:int|int64|float64)\b/.test(action)) return undefined;
  return 'a whole number quoted without "| int64" (Helm holds it as a float: 1000000 renders "1e+06")';
}
