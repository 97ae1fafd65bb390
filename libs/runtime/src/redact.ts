// What never reaches a log line: a value whose key names a credential, at any depth and in
// any spelling (Authorization, x-api-key, clientSecret, XDS_TOKEN, set-cookie…).

export const REDACTED = '[redacted]';

/** Key endings, compared lower-cased with `-` and `_` removed. */
const SENSITIVE_ENDINGS = [
  'authorization',
  'cookie',
  'token',
  'secret',
  'secrets',
  'password',
  'passwd',
  'apikey',
  'privatekey',
  'credential',
  'credentials',
  'jwt',
];

export function isSensitiveKey(key: string): boolean {
  const normalized = key.toLowerCase().replace(/[-_]/g, '');
  return SENSITIVE_ENDINGS.some((ending) => normalized.endsWith(ending));
}

const MAX_DEPTH = 10;

const isPlain = (value: object) => {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
};

/**
 * A copy of `value` with every sensitive key's value replaced; plain objects and arrays are
 * walked, anything else (errors, buffers, class instances) is left to the logger's
 * serializers. Returns `value` itself when nothing needed redacting.
 */
export function redactDeep<T>(value: T, depth = 0, seen = new WeakSet<object>()): T {
  if (value === null || typeof value !== 'object' || depth > MAX_DEPTH || seen.has(value)) return value;
  if (Array.isArray(value)) {
    seen.add(value);
    let changed = false;
    const out = value.map((item) => {
      const redacted = redactDeep(item, depth + 1, seen);
      changed ||= redacted !== item;
      return redacted;
    });
    return (changed ? out : value) as T;
  }
  if (!isPlain(value)) return value;
  seen.add(value);
  let changed = false;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    const redacted =
      isSensitiveKey(key) && item !== undefined && item !== null && item !== '' ? REDACTED : redactDeep(item, depth + 1, seen);
    changed ||= redacted !== item;
    out[key] = redacted;
  }
  return (changed ? out : value) as T;
}
