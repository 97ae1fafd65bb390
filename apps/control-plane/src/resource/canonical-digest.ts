// A digest of a value's canonical form, for memo keys that name exactly what a
// resource is built from. Plain data only (objects, arrays, strings, numbers,
// booleans, null, undefined): anything else throws rather than being digested
// by accident. Object keys are sorted, so key order never matters; an absent key
// and one set to `undefined` differ (a miss at worst, never a wrong hit).
//
// Digests of objects are remembered by identity. That is sound only for values
// that are never mutated after they are first digested: the mesh model is built
// once and never changed, and its unchanged parts are carried over by identity
// from one model to the next, so a callee's thousands of endpoints are digested
// once, not once per caller.
import { createHash } from 'node:crypto';

const digests = new WeakMap<object, string>();

export function canonicalDigest(value: unknown): string {
  return digestOf(value, '$');
}

function digestOf(value: unknown, path: string): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'undefined':
      return 'undefined';
    case 'object':
      if (value === null) return 'null';
      break;
    default:
      throw new TypeError(`canonicalDigest: ${typeof value} at ${path} is not plain data`);
  }
  const known = digests.get(value);
  if (known !== undefined) return known;
  const hash = createHash('sha256');
  if (Array.isArray(value)) {
    hash.update('[');
    value.forEach((item, i) => hash.update(digestOf(item, `${path}[${i}]`)).update(','));
  } else {
    // A plain object's prototype is a root one (Object.prototype of any realm, or null).
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== null && Object.getPrototypeOf(proto) !== null) {
      throw new TypeError(`canonicalDigest: ${value.constructor?.name ?? 'object'} at ${path} is not plain data`);
    }
    hash.update('{');
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record).sort()) {
      hash
        .update(JSON.stringify(key))
        .update(':')
        .update(digestOf(record[key], `${path}.${key}`))
        .update(',');
    }
  }
  // '#' keeps a nested digest apart from any string or number's canonical text.
  const digest = `#${hash.digest('base64url')}`;
  digests.set(value, digest);
  return digest;
}
