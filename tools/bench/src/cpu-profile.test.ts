import { OWNER_RULES, timeByOwner, type CpuProfile } from './cpu-profile';

/** A profile of the given stacks (root first), one sample each, `stepUs` apart from t = 0. */
function profileOf(stacks: string[][], stepUs = 1000): CpuProfile {
  const nodes: CpuProfile['nodes'] = [{ id: 1, callFrame: frame('(root)'), children: [] }];
  const samples = stacks.map((stack) => {
    let parent = nodes[0]!;
    for (const name of stack) {
      let child = nodes.find((n) => parent.children!.includes(n.id) && n.callFrame.functionName === name);
      if (!child) {
        child = { id: nodes.length + 1, callFrame: frame(name), children: [] };
        nodes.push(child);
        parent.children!.push(child.id);
      }
      parent = child;
    }
    return parent.id;
  });
  return { nodes, startTime: 0, samples, timeDeltas: stacks.map(() => stepUs) };
}

/** A frame whose "source" is given after a '@' in the name (fn@source), else the frame's function is all there is. */
function frame(name: string): CpuProfile['nodes'][number]['callFrame'] {
  const [functionName, url = ''] = name.split('@');
  return { functionName: functionName!, url, lineNumber: 0, columnNumber: 0 };
}

const sourceOf = (f: { url: string }) => f.url;

describe('timeByOwner', () => {
  it('gives each sample to the first rule its stack matches, for the time until the next sample, idle left out', () => {
    const profile = profileOf([
      ['(garbage collector)'],
      ['pump@apps/control-plane/src/xds/ads-session.ts', 'buildProxyResources@apps/control-plane/src/envoy/proxy-resources.ts'],
      ['pump@apps/control-plane/src/xds/ads-session.ts', 'transmit@apps/control-plane/src/xds/ads-session.ts', 'sendMessage@x'],
      ['pump@apps/control-plane/src/xds/ads-session.ts', 'desired@apps/control-plane/src/xds/sotw-session.ts'],
      ['(idle)'],
      ['somethingElse@y'],
      ['(program)'],
    ]);
    // Samples at 1..7 ms; each counts until the next (the last one, with none after it, counts 0).
    const times = timeByOwner(profile, 0, 10_000, sourceOf);
    expect(Object.fromEntries(times)).toEqual({
      GC: 1,
      translation: 1,
      'responses: grpc-js and http2 write path': 1,
      'sessions (pumps, requests, snapshots)': 1,
      other: 1,
      '(program)': 0,
    });
  });

  it('counts only the samples inside the window', () => {
    const profile = profileOf([['(garbage collector)'], ['(garbage collector)'], ['(garbage collector)'], ['(garbage collector)']]);
    expect(timeByOwner(profile, 1500, 3500, sourceOf).get('GC')).toBe(2);
  });

  it('names every owner once', () => {
    const owners = OWNER_RULES.map((r) => r.owner);
    expect(new Set(owners).size).toBe(owners.length);
  });
});
