// A stream's proxy-status record is rewritten many times (every flush its stream is
// dirty in) and only its versions and times change. Parsing the whole record with zod at
// each write made a new object tree per record (at 5,000 streams, a third of what the
// control plane's heap promoted per change): here the schema parses a record once, and
// later writes of the same record object check only that the fields the schema already
// accepted are the same strings and that the rest is of a shape the schema accepts,
// then serialize it as it is. Anything else goes through the schema as before, so the
// bytes written and the records refused are the schema's (proxy-status-encoder.test.ts
// checks both against encodeValue on random records).
import { encodeValue } from '../codec';
import { ProxyStatus } from '../records';
import type { StreamProxyStatus } from './proxy-status-store';

/** The fields a writer sets once per stream, as the schema accepted them. */
interface Accepted {
  service: string;
  nodeId: string;
  controlPlane: string;
  stream: string;
  connectedAt: string;
}

/** The record's keys in the schema's order: zod's output has them in this order, JSON.stringify in insertion order. */
const RECORD_KEYS = ['service', 'nodeId', 'controlPlane', 'stream', 'connectedAt', 'updatedAt', 'meshRevision', 'types'];
const TYPE_KEYS = ['lastSentVersion', 'lastAckedVersion', 'lastNack'];
const NACK_KEYS = ['version', 'error', 'at', 'meshRevision'];
const TYPE_NAMES: ReadonlySet<string> = new Set(['lds', 'rds', 'cds', 'eds', 'sds']);
const ISO_MILLIS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const ETCD_REVISION = /^[0-9]{1,19}$/;

export class ProxyStatusEncoder {
  /** Records the schema accepted, by object: a writer keeps one object per stream and changes it in place. */
  private readonly accepted = new WeakMap<object, Accepted>();

  /** The record's JSON as `encodeValue(ProxyStatus, …, status)` makes it; throws its InvalidRecordError for a bad record. */
  encode(status: StreamProxyStatus): Buffer {
    const accepted = this.accepted.get(status);
    if (accepted !== undefined && sameAccepted(status, accepted) && restIsValid(status)) return Buffer.from(JSON.stringify(status));
    const { bytes } = encodeValue(ProxyStatus, `proxy status ${JSON.stringify(`${status.service}/${status.nodeId}`)}`, status);
    const { service, nodeId, controlPlane, stream, connectedAt } = status;
    this.accepted.set(status, { service, nodeId, controlPlane, stream, connectedAt });
    return bytes;
  }
}

function sameAccepted(status: StreamProxyStatus, accepted: Accepted): boolean {
  return (
    status.service === accepted.service &&
    status.nodeId === accepted.nodeId &&
    status.controlPlane === accepted.controlPlane &&
    status.stream === accepted.stream &&
    status.connectedAt === accepted.connectedAt
  );
}

/**
 * Whether the fields that change after the first write are ones the schema accepts, in a shape whose JSON is
 * what the schema's output gives. Stricter than the schema is fine (the record then takes the schema's path);
 * looser is a defect.
 */
function restIsValid(status: StreamProxyStatus): boolean {
  if (!plainWithKeysIn(status, RECORD_KEYS)) return false;
  if (!isIsoMillis(status.updatedAt)) return false;
  if (!optionalString(status.meshRevision, 32)) return false;
  const types: unknown = status.types;
  if (!isPlainObject(types)) return false;
  for (const name of Object.keys(types)) {
    if (!TYPE_NAMES.has(name)) return false;
    const entry: unknown = (types as Record<string, unknown>)[name];
    if (!plainWithKeysIn(entry, TYPE_KEYS)) return false;
    const { lastSentVersion, lastAckedVersion, lastNack } = entry as Record<string, unknown>;
    if (!optionalString(lastSentVersion, 128) || !optionalString(lastAckedVersion, 128)) return false;
    if (lastNack === undefined) continue;
    if (!plainWithKeysIn(lastNack, NACK_KEYS)) return false;
    const nack = lastNack as Record<string, unknown>;
    if (typeof nack.version !== 'string' || nack.version.length > 128) return false;
    if (typeof nack.error !== 'string' || nack.error.length > 4096) return false;
    if (!isIsoMillis(nack.at)) return false;
    if (nack.meshRevision !== undefined && !(typeof nack.meshRevision === 'string' && ETCD_REVISION.test(nack.meshRevision))) return false;
  }
  return true;
}

function isPlainObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

/** A plain object whose own keys are some of `order`, in that order (JSON.stringify writes them as the schema's output would). */
function plainWithKeysIn(value: unknown, order: readonly string[]): boolean {
  if (!isPlainObject(value)) return false;
  let next = 0;
  for (const key of Object.keys(value)) {
    while (next < order.length && order[next] !== key) next++;
    if (next === order.length) return false;
    next++;
  }
  return true;
}

function optionalString(value: unknown, maxLength: number): boolean {
  return value === undefined || (typeof value === 'string' && value.length <= maxLength);
}

/** A time as Date.toISOString() writes it for years 0–9999: a subset of what z.iso.datetime() accepts. */
function isIsoMillis(value: unknown): boolean {
  if (typeof value !== 'string' || !ISO_MILLIS.test(value)) return false;
  const ms = Date.parse(value);
  return Number.isFinite(ms) && new Date(ms).toISOString() === value;
}
