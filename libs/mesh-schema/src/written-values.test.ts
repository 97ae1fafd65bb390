// The fast path (a mirror taking the value its own store remembered) against the
// reference (parsing the watch event's bytes), on every record the registry writes.
import fc from 'fast-check';
import { decodeValue, encodeValue } from './codec';
import { KeyLayout } from './keys';
import { InstanceRecord, ServiceRecord, ServiceSpec } from './records';
import { applyKvEvent, emptyMeshState, type KvEvent } from './state';
import { ServiceRecordOfCheckedSpec } from './store/checked-spec';
import { meshArbitrary, propertyRuns, RECORD_TIME } from './testing/arbitraries';
import { WrittenValues } from './written-values';

const layout = new KeyLayout('/trellis/');

function rememberedAlone(key: string, bytes: Buffer, value: object): boolean {
  const probe = new WrittenValues();
  probe.remember(key, bytes, value);
  return probe.size === 1;
}

describe('WrittenValues', () => {
  it('gives a value back only for the very bytes remembered at that key, once', () => {
    const written = new WrittenValues();
    const value = { a: { b: [1] } };
    written.remember('k', Buffer.from('{"x":1}'), value);
    expect(written.take('other', Buffer.from('{"x":1}'))).toBeUndefined();
    // Other bytes at the key (an earlier write's echo) leave the entry for this write's echo.
    expect(written.take('k', Buffer.from('{"x":2}'))).toBeUndefined();
    expect(written.take('k', Buffer.from('{"x":1}'))).toBe(value);
    expect(written.take('k', Buffer.from('{"x":1}'))).toBeUndefined();
    expect(written.size).toBe(0);
  });

  it('freezes what it remembers, since the mirror shares it', () => {
    const written = new WrittenValues();
    const value = { spec: { dependencies: [{ service: 'b' }] } };
    written.remember('k', Buffer.from('{}'), value);
    expect(Object.isFrozen(value.spec.dependencies[0])).toBe(true);
    expect(() => {
      (value.spec.dependencies as { service: string }[]).push({ service: 'c' });
    }).toThrow(TypeError);
  });

  it('does not remember what JSON would not carry back (undefined properties, -0)', () => {
    const written = new WrittenValues();
    written.remember('k', Buffer.from('{}'), { spec: { ingress: undefined } });
    written.remember('j', Buffer.from('{"w":0}'), { w: -0 });
    expect(written.size).toBe(0);
    written.remember('k', Buffer.from('{}'), { a: 1 });
    written.remember('k', Buffer.from('{}'), { a: undefined });
    expect(written.take('k', Buffer.from('{}'))).toBeUndefined(); // the later write replaced the earlier one
  });

  it('holds at most its capacity, dropping the oldest (a write that failed is never echoed)', () => {
    const written = new WrittenValues(2);
    for (const key of ['a', 'b', 'c']) written.remember(key, Buffer.from(key), { key });
    expect(written.size).toBe(2);
    expect(written.take('a', Buffer.from('a'))).toBeUndefined();
    expect(written.take('c', Buffer.from('c'))).toEqual({ key: 'c' });
  });

  it('remembers what parsing the written bytes gives, so the mirror is the same either way', () => {
    fc.assert(
      fc.property(meshArbitrary, fc.integer({ min: 1, max: 1_000_000 }), ({ services, instances }, generation) => {
        const written = new WrittenValues();
        const events: KvEvent[] = [];
        let revision = 10;
        for (const { spec } of services) {
          // As the store writes a service: the spec ServiceSpec produced, the record around it.
          const key = layout.service(spec.name);
          const record = encodeValue(ServiceRecordOfCheckedSpec, key, {
            spec: ServiceSpec.parse(spec),
            generation,
            created: { actor: 'test', at: RECORD_TIME },
            updated: { actor: 'someone else', at: RECORD_TIME },
            dependencySince: Object.fromEntries(spec.dependencies.map((d) => [d.service, generation])),
          });
          if (rememberedAlone(key, record.bytes, record.value))
            expect(decodeValue(ServiceRecord, key, record.bytes)).toStrictEqual(record.value);
          written.remember(key, record.bytes, record.value);
          events.push({ type: 'put', key, value: record.bytes, modRevision: String(revision), createRevision: String(revision++) });
        }
        for (const instance of instances) {
          // As the store writes an instance: InstanceRecord's output, serialized as it is.
          const key = layout.instance(instance.service, instance.id);
          const valid = InstanceRecord.parse(instance);
          const bytes = Buffer.from(JSON.stringify(valid));
          expect(bytes.equals(encodeValue(InstanceRecord, key, valid).bytes)).toBe(true);
          // Remembered exactly when parsing the bytes gives the value back (not when a property is undefined).
          const remembered = rememberedAlone(key, bytes, valid);
          expect(remembered).toBe(Object.values(valid).every((v) => v !== undefined));
          if (remembered) expect(decodeValue(InstanceRecord, key, bytes)).toStrictEqual(valid);
          written.remember(key, bytes, valid);
          events.push({ type: 'put', key, value: bytes, modRevision: String(revision), createRevision: String(revision++) });
        }
        const fast = emptyMeshState();
        const reference = emptyMeshState();
        const noInvalid = () => {
          throw new Error('a remembered record was reported invalid');
        };
        for (const ev of events) {
          const decoded = written.take(ev.key, ev.value);
          expect(applyKvEvent(fast, layout, { ...ev, ...(decoded !== undefined ? { decoded } : {}) }, noInvalid)).toEqual(
            applyKvEvent(reference, layout, ev, noInvalid),
          );
        }
        expect(fast).toStrictEqual(reference);
      }),
      { numRuns: propertyRuns(100) },
    );
  });
});
