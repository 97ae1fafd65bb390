// A registration checked once (CheckedInstanceRegistration, then instanceRecordOf) against the
// reference: the registration schema at the route and the full InstanceRecord in the store.
import fc from 'fast-check';
import { encodeValue } from '../codec';
import { InvalidRecordError } from '../errors';
import { InstanceRecord } from '../records';
import { propertyRuns } from '../testing/arbitraries';
import { CheckedInstanceRegistration, instanceRecordOf, InstanceRegistration, type CheckedInstanceFields } from './checked-instance';

const AT = '2026-12-07T18:00:00.000Z';

/** Registration bodies, most of them valid, some with a field wrong, missing or unknown. */
const body = fc
  .record(
    {
      id: fc.oneof(fc.stringMatching(/^[a-z0-9]([a-z0-9.-]{0,6}[a-z0-9])?$/), fc.constantFrom('', 'Bad_ID', '-x')),
      address: fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('::1', 'localhost', '10.0.0.256', '')),
      port: fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.constantFrom(0, 65536, 1.5, '80')),
      labels: fc.oneof(
        fc.dictionary(fc.stringMatching(/^[a-z]([a-z0-9.-]{0,8}[a-z0-9])?$/), fc.stringMatching(/^[a-z0-9]{0,8}$/), { maxKeys: 4 }),
        fc.constant({ 'bad key!': 'x' }),
      ),
      locality: fc.oneof(
        fc.record({ region: fc.constantFrom('', 'eu', 'us'), zone: fc.constantFrom('', 'z1', 'z-2') }, { requiredKeys: [] }),
        fc.constant({ region: 'eu west' }),
      ),
      platform: fc.constantFrom('vm', 'k8s', 'lambda'),
      weight: fc.oneof(fc.integer({ min: 1, max: 128 }), fc.constantFrom(0, 129)),
      ttlSeconds: fc.oneof(fc.integer({ min: 5, max: 3600 }), fc.constantFrom(4, 3601, 30.5)),
      drainingSince: fc.constant(AT),
      extra: fc.constant(true),
    },
    { requiredKeys: ['id', 'address', 'port', 'platform', 'ttlSeconds'] },
  )
  // Mostly as made (drainingSince and extra are rare: fc.record leaves an optional key out half the time),
  // sometimes a required field missing too.
  .chain((b) =>
    fc
      .tuple(fc.boolean(), fc.boolean(), fc.option(fc.constantFrom('id', 'address', 'port', 'platform', 'ttlSeconds'), { freq: 4 }))
      .map(([keepDraining, keepExtra, missing]) => {
        const out: Record<string, unknown> = { ...b };
        if (!keepDraining || !keepExtra) delete out['drainingSince'];
        if (!keepExtra || !keepDraining) delete out['extra'];
        if (missing !== null) delete out[missing];
        return out;
      }),
  );

const service = fc.oneof(fc.constantFrom('orders', 'checkout', 'a'), fc.constantFrom('Orders', '', 'x'.repeat(64)));

describe('a registration checked once', () => {
  it('accepts what the route and store schemas accept, and makes the same record and bytes', () => {
    fc.assert(
      fc.property(body, service, (b, svc) => {
        const reference = InstanceRegistration.safeParse(b);
        const checked = CheckedInstanceRegistration.safeParse(b);
        expect(checked.success).toBe(reference.success);
        if (!reference.success || !checked.success) return;
        const { ttlSeconds, ...fields } = reference.data;
        expect(checked.data.ttlSeconds).toBe(ttlSeconds);
        let full: { value: InstanceRecord; bytes: Buffer } | undefined;
        try {
          full = encodeValue(InstanceRecord, 'k', { ...fields, service: svc, registeredAt: AT });
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidRecordError);
        }
        if (!full) {
          expect(() => instanceRecordOf({ service: svc, instance: checked.data.instance, registeredAt: AT }, 'k')).toThrow(
            InvalidRecordError,
          );
          return;
        }
        const once = instanceRecordOf({ service: svc, instance: checked.data.instance, registeredAt: AT }, 'k');
        expect(once).toStrictEqual(full.value);
        expect(Buffer.from(JSON.stringify(once)).equals(full.bytes)).toBe(true);
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it("takes a time from a clock's toISOString unchecked, and still checks the service", () => {
    const { instance } = CheckedInstanceRegistration.parse({ id: 'i-1', address: '10.0.0.1', port: 80, platform: 'vm', ttlSeconds: 30 });
    // Any time a store's clock can give (Date's four-digit years) is one the full schema accepts.
    const clock = fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true });
    fc.assert(
      fc.property(clock, service, (date, svc) => {
        const at = date.toISOString();
        let full: InstanceRecord | undefined;
        try {
          full = encodeValue(InstanceRecord, 'k', { ...instance, service: svc, registeredAt: at }).value;
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidRecordError);
        }
        if (full) expect(instanceRecordOf({ service: svc, instance, registeredAt: at }, 'k', true)).toStrictEqual(full);
        else expect(() => instanceRecordOf({ service: svc, instance, registeredAt: at }, 'k', true)).toThrow(InvalidRecordError);
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('names the bad service or time as the full schema does', () => {
    const { instance } = CheckedInstanceRegistration.parse({ id: 'i-1', address: '10.0.0.1', port: 80, platform: 'vm', ttlSeconds: 30 });
    for (const [svc, at] of [
      ['Not A Name', AT],
      ['orders', 'yesterday'],
    ] as const) {
      const full = (() => {
        try {
          encodeValue(InstanceRecord, 'k', { ...instance, service: svc, registeredAt: at });
        } catch (err) {
          return (err as InvalidRecordError).issues;
        }
        throw new Error('the full schema accepted it');
      })();
      expect(() => instanceRecordOf({ service: svc, instance, registeredAt: at }, 'k')).toThrow(
        expect.objectContaining({ key: 'k', issues: full }) as Error,
      );
    }
  });

  it('checks in full fields that did not come from CheckedInstanceRegistration, whatever their type says', () => {
    const forged = { id: 'i-1', address: 'not-an-ip', port: 0, platform: 'vm', labels: {}, locality: {}, weight: 1 };
    expect(() =>
      instanceRecordOf({ service: 'orders', instance: forged as unknown as CheckedInstanceFields, registeredAt: AT }, 'k'),
    ).toThrow(InvalidRecordError);
    // A copy of checked fields is not them: it is checked again (and passes, being valid).
    const { instance } = CheckedInstanceRegistration.parse({ id: 'i-1', address: '10.0.0.1', port: 80, platform: 'vm', ttlSeconds: 30 });
    const copy = { ...instance, port: 0 } as CheckedInstanceFields;
    expect(() => instanceRecordOf({ service: 'orders', instance: copy, registeredAt: AT }, 'k')).toThrow(InvalidRecordError);
  });

  it('freezes the checked fields, so they stay what was checked', () => {
    const { instance } = CheckedInstanceRegistration.parse({
      id: 'i-1',
      address: '10.0.0.1',
      port: 80,
      platform: 'vm',
      labels: { tier: 'web' },
      ttlSeconds: 30,
    });
    expect(Object.isFrozen(instance)).toBe(true);
    expect(Object.isFrozen(instance.labels)).toBe(true);
    expect(Object.isFrozen(instance.locality)).toBe(true);
    expect(() => {
      (instance as { port: number }).port = 0;
    }).toThrow(TypeError);
  });
});
