// A digest of a value's canonical form, for memo keys that name exactly what a
// resource is built from. Plain data only (objects, arrays, strings, numbers,
// booleans, null, undefined): anything else throws rather than being digested
// by accident. Object keys are sorted, so key order never matters; an absent key
// and one set to `undefined` differ (a miss at worst, never a wrong hit).
//
// Short canonical texts are their own digest; longer ones are hashed (sha256).
// Hashed digests of objects are remembered by identity. That is sound only for values
// that are never mutated after they are first digested: the mesh model is built
// once and never changed, and its unchanged parts are carried over by identity
// from one model to the next, so a callee's thousands of endpoints are digested
// once, not once per caller.
import { hash } from 'node:crypto';
import { compareStrings, sortInPlace } from '@trellis/mesh-contracts';

const digests = new WeakMap<object, string>();

/** Canonical texts up to this length are used as they are instead of being hashed. */
const INLINE_MAX = 256;

export function canonicalDigest(value: unknown): string {
  try {
    return digestOf(value);
  } catch (err) {
    if (err instanceof NotPlainData) throw new TypeError(`canonicalDigest: ${err.what} at $${err.path} is not plain data`);
    throw err;
  }
}

/** Thrown inside the walk; each level adds its step to `path` on the way out (no path is built unless it is needed). */
class NotPlainData extends Error {
  path = '';
  constructor(readonly what: string) {
    super(what);
  }
}

function digestOf(value: unknown): string {
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
      throw new NotPlainData(typeof value);
  }
  const known = digests.get(value);
  if (known !== undefined) return known;
  // The canonical text is built in one string and hashed once (one hash update per
  // field cost more than the hashing itself).
  let text: string;
  if (Array.isArray(value)) {
    text = '[';
    for (let i = 0; i < value.length; i++) text += within(i, value[i]) + ',';
    text += ']';
  } else {
    // A plain object's prototype is a root one (Object.prototype of any realm, or null).
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== null && Object.getPrototypeOf(proto) !== null) throw new NotPlainData(value.constructor?.name ?? 'object');
    const record = value as Record<string, unknown>;
    text = '{';
    for (const key of sortInPlace(Object.keys(record), compareStrings)) text += `${JSON.stringify(key)}:${within(key, record[key])},`;
    text += '}';
  }
  const digest = digestText(text);
  // Only hashed digests are remembered: a short text is its own digest and cheaper to make again than a
  // WeakMap entry (setting one, in a map holding the model's objects, cost more than the whole walk).
  if (digest !== text) digests.set(value, digest);
  return digest;
}

/**
 * The digest of a text made of digests (e.g. `a|b|c`), by the same rule as
 * canonicalDigest's: a short text is its own digest (cheaper than hashing, and as
 * exact), a long one is hashed; '#' keeps a hash apart from any canonical text.
 * For values built only to be digested once: nothing is remembered for them (a
 * throwaway array would otherwise grow the identity cache on every call).
 */
export function digestText(text: string): string {
  if (text.length > INLINE_MAX) return `#${hash('sha256', text, 'base64url')}`;
  // A text built by `+=` is a rope of every piece joined (~1.2 KB for a 120-character digest); a digest is kept for
  // as long as what it names (the model's, the memo's keys), so it is made one flat string now (~0.2 KB): reading a
  // character flattens it in place, and the pieces die young instead of being promoted with it.
  text.charCodeAt(0);
  return text;
}

/** The digest of an array item (by index) or an object field (by key). */
function within(step: number | string, value: unknown): string {
  try {
    return digestOf(value);
  } catch (err) {
    if (err instanceof NotPlainData) err.path = (typeof step === 'number' ? `[${step}]` : `.${step}`) + err.path;
    throw err;
  }
}
