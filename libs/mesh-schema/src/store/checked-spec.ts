// The service record and history entry schemas for a spec that ServiceSpec has just
// produced. ServiceSpec's output parses to itself, so checking it again inside the
// record and again inside its history entry (the full schemas) only repeats the work:
// a write validates the spec once and the rest of the record in full. Byte-for-byte the
// same as the full schemas (checked-spec.test.ts); never for a spec that was not parsed.
import { z } from 'zod';
import { HistoryEntry, ServiceRecord, ServiceSpec } from '../records';
import { deepFreeze } from '../written-values';

/** A value ServiceSpec returned, taken as it is. */
const CheckedSpec = z.custom<ServiceSpec>();

export const ServiceRecordOfCheckedSpec = ServiceRecord.extend({ spec: CheckedSpec });
export const HistoryEntryOfCheckedSpec = HistoryEntry.extend({ spec: CheckedSpec.nullable() });

/**
 * The history entry of a create or an update, as the bytes `encodeValue(HistoryEntryOfCheckedSpec)`
 * writes, from the record ServiceRecordOfCheckedSpec has just produced for that change: each
 * of the entry's fields is one of the record's, checked by that parse (the service is the
 * spec's name, a ServiceName; the generation; the actor and time are the record's `updated`),
 * so it is not checked a second time. Keys in the schema's order, as zod outputs them.
 */
export function historyEntryOfRecord(record: ServiceRecord, action: 'create' | 'update'): Buffer {
  const entry: HistoryEntry = {
    service: record.spec.name,
    generation: record.generation,
    action,
    actor: record.updated.actor,
    at: record.updated.at,
    spec: record.spec,
  };
  return Buffer.from(JSON.stringify(entry));
}

/** Specs CheckedServiceSpec produced: frozen, so they are still what ServiceSpec made of them. */
const checkedSpecs = new WeakSet<object>();

/**
 * ServiceSpec, whose output (frozen) the store then takes without parsing it again: the
 * registry parses a request's spec with it, so a write checks the spec once. Only this
 * schema's output is recognised; any other spec, whatever it looks like, is checked.
 */
export const CheckedServiceSpec = ServiceSpec.transform((spec) => {
  checkedSpecs.add(deepFreeze(spec));
  return spec;
});

export function isCheckedSpec(spec: unknown): spec is ServiceSpec {
  return typeof spec === 'object' && spec !== null && checkedSpecs.has(spec);
}
