// V8 heap snapshots (.heapsnapshot JSON) summarised by constructor, and two summaries compared:
// what grew between two points of a run is where to look for a leak. Self sizes, not retained
// sizes: a growing Map shows as its backing arrays growing and its entries' constructors counting
// up, which is what the comparison needs, without the dominator tree.

export interface HeapSnapshotJson {
  snapshot: { meta: { node_fields: string[]; node_types: unknown[] } };
  nodes: number[];
  strings: string[];
}

export interface ConstructorTotal {
  count: number;
  size: number;
}

/** constructor (objects, closures, native) or `(type)` (strings, arrays, code, …) → count and self size. */
export type HeapSummary = Map<string, ConstructorTotal>;

const BY_NAME = new Set(['object', 'closure', 'native']);

export function summarizeHeapSnapshot(snapshot: HeapSnapshotJson): HeapSummary {
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0] as string[];
  const stride = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const summary: HeapSummary = new Map();
  for (let i = 0; i < snapshot.nodes.length; i += stride) {
    const type = types[snapshot.nodes[i + typeAt]!] ?? 'unknown';
    const key = BY_NAME.has(type) ? (snapshot.strings[snapshot.nodes[i + nameAt]!] ?? '?') : `(${type})`;
    const total = summary.get(key) ?? { count: 0, size: 0 };
    total.count += 1;
    total.size += snapshot.nodes[i + sizeAt]!;
    summary.set(key, total);
  }
  return summary;
}

export interface ConstructorGrowth {
  name: string;
  before: ConstructorTotal;
  after: ConstructorTotal;
}

/** Every constructor whose self size grew from `before` to `after`, most growth first. */
export function compareHeapSnapshots(before: HeapSummary, after: HeapSummary): ConstructorGrowth[] {
  const none = { count: 0, size: 0 };
  return [...after]
    .map(([name, total]) => ({ name, before: before.get(name) ?? none, after: total }))
    .filter((g) => g.after.size > g.before.size)
    .sort((a, b) => b.after.size - b.before.size - (a.after.size - a.before.size) || (a.name < b.name ? -1 : 1));
}
