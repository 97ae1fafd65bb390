import { compareHeapSnapshots, summarizeHeapSnapshot, type HeapSnapshotJson } from './heap-snapshot';

/** A snapshot in V8's layout: nodes as flat [type, name, id, self_size, edge_count] tuples. */
function snapshot(nodes: [type: number, name: string, selfSize: number][]): HeapSnapshotJson {
  const strings = [...new Set(nodes.map(([, name]) => name))];
  return {
    snapshot: {
      meta: {
        node_fields: ['type', 'name', 'id', 'self_size', 'edge_count'],
        node_types: [['hidden', 'array', 'string', 'object', 'code', 'closure'], 'string', 'number', 'number', 'number'],
      },
    },
    nodes: nodes.flatMap(([type, name, size], id) => [type, strings.indexOf(name), id + 1, size, 0]),
    strings,
  };
}

describe('heap snapshot summaries', () => {
  it('totals objects and closures by constructor name and everything else by node type', () => {
    const summary = summarizeHeapSnapshot(
      snapshot([
        [3, 'Map', 32],
        [3, 'Map', 32],
        [5, 'onFinish', 56],
        [2, 'some text', 40],
        [2, 'other text', 24],
        [1, '', 100],
      ]),
    );
    expect(Object.fromEntries(summary)).toEqual({
      Map: { count: 2, size: 64 },
      onFinish: { count: 1, size: 56 },
      '(string)': { count: 2, size: 64 },
      '(array)': { count: 1, size: 100 },
    });
  });

  it('lists what grew, most first, leaving out what stayed or shrank', () => {
    const before = summarizeHeapSnapshot(
      snapshot([
        [3, 'Map', 32],
        [3, 'Waiter', 40],
        [1, '', 1000],
      ]),
    );
    const after = summarizeHeapSnapshot(
      snapshot([
        [3, 'Map', 32],
        [3, 'Waiter', 40],
        [3, 'Waiter', 40],
        [3, 'Entry', 8],
        [1, '', 10],
      ]),
    );
    expect(compareHeapSnapshots(before, after)).toEqual([
      { name: 'Waiter', before: { count: 1, size: 40 }, after: { count: 2, size: 80 } },
      { name: 'Entry', before: { count: 0, size: 0 }, after: { count: 1, size: 8 } },
    ]);
  });
});
