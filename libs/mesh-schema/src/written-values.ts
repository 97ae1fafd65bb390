// WrittenValues: the records a process is writing, already checked, kept for its own
// watch mirror so that the echo of a write does not parse the same bytes again.
// Decoding is a pure function of a key's bytes, so an entry stands for exactly those
// bytes at exactly that key, whoever wrote them and whichever arrives first, the
// txn's answer or the watch event; any other bytes there are decoded as usual.
// The registry spends a full schema parse per write on its own echo otherwise.

interface Written {
  bytes: Buffer;
  value: unknown;
}

/** Entries held at most: a write's echo comes within milliseconds; what stays (a write etcd refused) ages out. */
const DEFAULT_CAPACITY = 256;

export class WrittenValues {
  private readonly entries = new Map<string, Written>();

  constructor(private readonly capacity = DEFAULT_CAPACITY) {}

  /**
   * `bytes` are about to be written at `key`: `JSON.stringify(value)` of a value the
   * record's schema produced, so parsing them gives `value` back — unless it holds what
   * JSON does not carry (a property set to undefined, -0), which is then not remembered.
   * The value is frozen: the mirror will hold it, so nobody may change it.
   */
  remember(key: string, bytes: Buffer, value: object): void {
    this.entries.delete(key);
    if (!survivesJson(value)) return;
    this.entries.set(key, { bytes, value: deepFreeze(value) });
    writtenJson.set(value, bytes);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }

  /**
   * The value remembered for these very bytes at `key`, if any, which is then used up.
   * Other bytes there leave the entry: they may be the echo of an earlier write to the
   * same key, with this write's echo still to come.
   */
  take(key: string, bytes: Buffer): unknown {
    const entry = this.entries.get(key);
    if (entry === undefined || !entry.bytes.equals(bytes)) return undefined;
    this.entries.delete(key);
    return entry.value;
  }

  get size(): number {
    return this.entries.size;
  }
}

/** Values remembered (frozen) and the bytes written for them, `JSON.stringify(value)`: see takeWrittenJson. */
const writtenJson = new WeakMap<object, Buffer>();

/**
 * `JSON.stringify(value)` for a value a WrittenValues remembered, as the bytes that were
 * written (the value is frozen, so they stay its JSON), once: they are forgotten here, so a
 * record the watch mirror keeps for long does not keep its bytes too. Undefined for any other
 * value. A write's answer is the record it wrote: the registry sends these bytes rather than
 * serializing the record a second time.
 */
export function takeWrittenJson(value: object): Buffer | undefined {
  const bytes = writtenJson.get(value);
  if (bytes !== undefined) writtenJson.delete(value);
  return bytes;
}

function survivesJson(value: unknown): boolean {
  if (value === undefined || Object.is(value, -0)) return false;
  if (typeof value !== 'object' || value === null) return true;
  for (const child of Object.values(value)) if (!survivesJson(child)) return false;
  return true;
}

/** Freezes `value` and everything it holds. */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value;
  Object.freeze(value);
  for (const child of Object.values(value)) deepFreeze(child);
  return value;
}
