import fc from 'fast-check';
import { byName, callersByService, compareStrings, isCallDirection, mayCall, sortInPlace } from './calls';
import { matchesSecretDigest, secretDigest } from './secrets';

const services = [
  { name: 'a', dependencies: [{ service: 'b' }, { service: 'ghost' }] },
  { name: 'c', dependencies: [{ service: 'b' }] },
  { name: 'b', dependencies: [] },
];
const registered = (s: string) => services.some((x) => x.name === s);

describe('who may call whom', () => {
  it('admits A→B only when both are registered and A declared B', () => {
    expect(mayCall(services[0], 'b', registered)).toEqual({ allowed: true });
    expect(mayCall(services[2], 'a', registered)).toEqual({ allowed: false, reason: 'undeclared' });
    expect(mayCall(services[0], 'ghost', registered)).toEqual({ allowed: false, reason: 'unknown-destination' });
    expect(mayCall(undefined, 'b', registered)).toEqual({ allowed: false, reason: 'unknown-source' });
  });

  it('lists, for every service, exactly the callers mayCall admits, sorted', () => {
    const callers = callersByService([...services].reverse());
    expect(Object.fromEntries(callers)).toEqual({ b: ['a', 'c'] });
    for (const source of services) {
      for (const destination of ['a', 'b', 'c', 'ghost']) {
        const listed = callers.get(destination)?.includes(source.name) ?? false;
        expect({ source: source.name, destination, listed }).toEqual({
          source: source.name,
          destination,
          listed: mayCall(source, destination, registered).allowed,
        });
      }
    }
  });

  it('knows the three call directions and nothing else', () => {
    expect(['outbound', 'inbound', 'edge', 'Outbound', '', undefined].map(isCallDirection)).toEqual([
      true,
      true,
      true,
      false,
      false,
      false,
    ]);
  });

  it('sorts by name in code-unit order, whatever the locale', () => {
    expect([{ name: 'b' }, { name: 'B' }, { name: 'a' }].sort(byName).map((x) => x.name)).toEqual(['B', 'a', 'b']);
  });
});

describe('secrets', () => {
  it('matches only the same secret', () => {
    const digest = secretDigest('s3cret');
    expect(matchesSecretDigest('s3cret', digest)).toBe(true);
    expect(matchesSecretDigest('s3cret ', digest)).toBe(false);
    expect(matchesSecretDigest('', digest)).toBe(false);
  });
});

describe('sortInPlace', () => {
  it('gives what Array.prototype.sort gives (equal items keep their order), sorted or not', () => {
    // Few distinct names, so equal ones are common; half the inputs arrive sorted already; short and long lists.
    const items = fc.array(fc.record({ name: fc.constantFrom('a', 'b', 'B', 'ab', 'é', ''), id: fc.nat() }), { maxLength: 40 });
    fc.assert(
      fc.property(items, fc.boolean(), (list, presorted) => {
        const input = presorted ? [...list].sort(byName) : list;
        const expected = [...input].sort(byName);
        const copy = [...input];
        expect(sortInPlace(copy, byName)).toBe(copy);
        expect(copy).toEqual(expected);
        // Strings: the same order as sort() without a comparator (code units).
        const names = input.map((item) => item.name);
        expect(sortInPlace([...names], compareStrings)).toEqual([...names].sort());
      }),
      { numRuns: Number(process.env['TRELLIS_PROPERTY_RUNS'] ?? 200) },
    );
  });
});
