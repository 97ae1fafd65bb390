// The service record and history entry schemas for a spec that ServiceSpec has just
// produced. ServiceSpec's output parses to itself, so checking it again inside the
// record and again inside its history entry (the full schemas) only repeats the work:
// a write validates the spec once and the rest of the record in full. Byte-for-byte the
// same as the full schemas (checked-spec.test.ts); never for a spec that was not parsed.
import { z } from 'zod';
import { HistoryEntry, ServiceRecord, type ServiceSpec } from '../records';

/** A value ServiceSpec returned, taken as it is. */
const CheckedSpec = z.custom<ServiceSpec>();

export const ServiceRecordOfCheckedSpec = ServiceRecord.extend({ spec: CheckedSpec });
export const HistoryEntryOfCheckedSpec = HistoryEntry.extend({ spec: CheckedSpec.nullable() });
