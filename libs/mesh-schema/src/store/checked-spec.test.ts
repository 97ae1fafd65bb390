// The fast path (record and history schemas taking a parsed spec as it is) against the
// reference (the full schemas), on every spec the registry accepts.
import fc from 'fast-check';
import { encodeValue } from '../codec';
import { HistoryEntry, ServiceRecord, ServiceSpec } from '../records';
import { meshArbitrary, propertyRuns } from '../testing/arbitraries';
import {
  CheckedServiceSpec,
  HistoryEntryOfCheckedSpec,
  historyEntryOfRecord,
  isCheckedSpec,
  ServiceRecordOfCheckedSpec,
} from './checked-spec';

const change = fc.record({
  generation: fc.integer({ min: 1, max: 1_000_000 }),
  actor: fc.string({ maxLength: 40 }),
  at: fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
  action: fc.constantFrom('create' as const, 'update' as const, 'rollback' as const),
});

describe('service record and history entry of a checked spec', () => {
  it('encode to the same bytes as the full schemas', () => {
    fc.assert(
      fc.property(meshArbitrary, change, ({ services }, { generation, actor, at, action }) => {
        for (const { spec } of services) {
          const record = {
            spec,
            generation,
            created: { actor, at },
            updated: { actor, at },
            dependencySince: Object.fromEntries(spec.dependencies.map((d) => [d.service, generation])),
          };
          const fastRecord = encodeValue(ServiceRecordOfCheckedSpec, 'k', record);
          const fullRecord = encodeValue(ServiceRecord, 'k', record);
          expect(fastRecord.bytes.equals(fullRecord.bytes)).toBe(true);
          expect(fastRecord.value).toEqual(fullRecord.value);

          const entry = { service: spec.name, generation, action, actor, at, spec };
          expect(encodeValue(HistoryEntryOfCheckedSpec, 'k', entry).bytes.equals(encodeValue(HistoryEntry, 'k', entry).bytes)).toBe(true);
          // A create's or an update's entry made from the record, unchecked: the full schema's bytes.
          if (action !== 'rollback') {
            const ofRecord = historyEntryOfRecord(fastRecord.value, action);
            expect(ofRecord.toString()).toBe(encodeValue(HistoryEntry, 'k', entry).bytes.toString());
          }
        }
        const deletion = { service: 'gone', generation, action: 'delete' as const, actor, at, spec: null };
        expect(encodeValue(HistoryEntryOfCheckedSpec, 'k', deletion).bytes.equals(encodeValue(HistoryEntry, 'k', deletion).bytes)).toBe(
          true,
        );
      }),
      { numRuns: propertyRuns(100) },
    );
  });

  it('still checks everything but the spec', () => {
    const spec = { name: 'a', team: 't', description: '', protocol: 'http' as const, port: 1, dependencies: [], policy: {} };
    const at = '2026-01-01T00:00:00.000Z';
    expect(() =>
      encodeValue(ServiceRecordOfCheckedSpec, 'k', { spec, generation: 0, created: { actor: 'x', at }, updated: { actor: 'x', at } }),
    ).toThrow(/generation/);
    expect(() =>
      encodeValue(HistoryEntryOfCheckedSpec, 'k', { service: 'a', generation: 1, action: 'update', actor: 'x', at: 'yesterday', spec }),
    ).toThrow(/at/);
  });
});

describe('CheckedServiceSpec', () => {
  const field = fc.constantFrom('name', 'team', 'description', 'protocol', 'port', 'dependencies', 'policy', 'ingress', 'mtls', 'extra');

  it('accepts and refuses exactly what ServiceSpec does, with the same value and the same issues', () => {
    fc.assert(
      fc.property(meshArbitrary, field, fc.anything(), fc.boolean(), ({ services }, key, junk, damage) => {
        for (const { spec } of services) {
          const input: unknown = damage ? { ...spec, [key]: junk } : { ...spec };
          const reference = ServiceSpec.safeParse(input);
          const checked = CheckedServiceSpec.safeParse(input);
          expect(checked.success).toBe(reference.success);
          if (reference.success && checked.success) {
            expect(checked.data).toStrictEqual(reference.data);
            expect(isCheckedSpec(checked.data)).toBe(true);
          } else expect(checked.error?.issues).toEqual(reference.error?.issues);
        }
      }),
      { numRuns: propertyRuns(100) },
    );
  });

  it('marks only its own output, frozen so it stays what was checked', () => {
    const input = { name: 'a', team: 't', protocol: 'http', port: 80, dependencies: [{ service: 'b' }] };
    const spec = CheckedServiceSpec.parse(input);
    expect(isCheckedSpec(spec)).toBe(true);
    expect(() => {
      (spec.dependencies as { service: string }[]).push({ service: 'a' }); // would depend on itself
    }).toThrow(TypeError);
    expect(isCheckedSpec(ServiceSpec.parse(input))).toBe(false);
    expect(isCheckedSpec({ ...spec })).toBe(false);
    expect(isCheckedSpec(input)).toBe(false);
  });
});
