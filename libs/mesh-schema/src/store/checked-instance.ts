// An instance registration checked once. The registry parses a registration's body with
// CheckedInstanceRegistration, whose output the store then takes as it is: building the
// InstanceRecord from it checks only what the body does not carry (the service, named by the
// path, and the registration time). Byte-for-byte the record the full InstanceRecord parse
// makes (checked-instance.test.ts); any other value is checked in full.
import { z } from 'zod';
import { describeIssues, encodeValue } from '../codec';
import { InvalidRecordError } from '../errors';
import { InstanceRecord, type InstanceRecordInput } from '../records';
import { deepFreeze } from '../written-values';

/**
 * The body of a registration: the instance as InstanceRecord checks it, less its service (the
 * path names it), its registration time (the registry's clock) and draining (set through
 * /drain: a registration always starts serving), plus the TTL of its lease.
 */
export const InstanceRegistration = InstanceRecord.omit({ service: true, registeredAt: true, drainingSince: true })
  .extend({
    /** Lease TTL: the instance disappears this long after its last heartbeat. */
    ttlSeconds: z.number().int().min(5).max(3600),
  })
  .strict();
export type InstanceRegistration = z.infer<typeof InstanceRegistration>;

/** The instance's own fields of a registration (all but its lease TTL). */
export type InstanceFields = Omit<InstanceRegistration, 'ttlSeconds'>;

declare const checkedInstance: unique symbol;
/** Instance fields that CheckedInstanceRegistration produced, frozen. The brand keeps plain objects out at compile time; `checkedFields` decides at run time. */
export type CheckedInstanceFields = Readonly<InstanceFields> & { readonly [checkedInstance]: true };

/** Fields CheckedInstanceRegistration produced: frozen, so they are still what InstanceRegistration made of them. */
const checkedFields = new WeakSet<object>();

/** InstanceRegistration, its instance's fields split from the TTL, frozen and marked for the store. */
export const CheckedInstanceRegistration = InstanceRegistration.transform(({ ttlSeconds, ...fields }) => {
  checkedFields.add(deepFreeze(fields));
  return { ttlSeconds, instance: fields as CheckedInstanceFields };
});
export type CheckedInstanceRegistration = z.infer<typeof CheckedInstanceRegistration>;

/** An instance to register from a checked registration's fields. */
export interface CheckedInstanceInput {
  service: string;
  instance: CheckedInstanceFields;
  registeredAt: string;
}

/** What the record holds beside a checked registration's fields. */
const ServiceAndTime = InstanceRecord.pick({ service: true, registeredAt: true });
/** The same when the time is the store's own clock's, which needs no check (zod's datetime regex: ~10 µs). */
const ServiceOnly = InstanceRecord.pick({ service: true });

/**
 * The InstanceRecord of `input`, as `encodeValue(InstanceRecord, …)` makes it; InvalidRecordError
 * naming `key` when it is not one. Fields CheckedInstanceRegistration produced are taken as they
 * are, the service and time beside them checked with their own schemas, and the keys put in the
 * schema's order (service, the fields, registeredAt). Anything else is parsed in full.
 * `timeFromClock`: the registration time is the store's clock's `toISOString()`, valid by construction.
 */
export function instanceRecordOf(input: InstanceRecordInput | CheckedInstanceInput, key: string, timeFromClock = false): InstanceRecord {
  if (!('instance' in input)) return encodeValue(InstanceRecord, key, input).value;
  const { service, instance, registeredAt } = input;
  if (!checkedFields.has(instance)) return encodeValue(InstanceRecord, key, { ...instance, service, registeredAt }).value;
  const checked = timeFromClock ? ServiceOnly.safeParse({ service }) : ServiceAndTime.safeParse({ service, registeredAt });
  if (!checked.success) throw new InvalidRecordError(key, describeIssues(checked.error));
  return { service, ...(instance as InstanceFields), registeredAt };
}
