// Strings read from the wire, kept by their bytes. A proxy asks about the same few
// routes again and again, so the same context-extension values (a direction, two
// service names) arrive on every Check: decoding them each time costs a call into
// C++ and garbage per value, and each fresh string is hashed again by every Map it
// is looked up in. An interned string is the very same object each time (its hash
// computed once), found by hashing the bytes in JS.
//
// The table is direct-mapped and fixed-size: a value that collides replaces the
// entry, so hostile input can make lookups miss (costing what decoding did
// before) but can never grow it. Only short values are kept (service names are
// DNS labels, at most 63 bytes).

const SLOTS = 4096; // a power of two
const MAX_INTERNED_BYTES = 64;

export class StringInterner {
  private readonly bytes: (Buffer | undefined)[] = new Array<Buffer | undefined>(SLOTS).fill(undefined);
  private readonly strings: string[] = new Array<string>(SLOTS).fill('');

  /** `buf.toString('utf8', start, end)`, the same string object for the same bytes while its slot holds them. */
  utf8(buf: Buffer, start: number, end: number): string {
    const length = end - start;
    if (length > MAX_INTERNED_BYTES) return buf.toString('utf8', start, end);
    // FNV-1a over the bytes.
    let hash = 0x811c9dc5;
    for (let i = start; i < end; i++) hash = Math.imul(hash ^ buf[i]!, 0x01000193);
    const slot = hash & (SLOTS - 1);
    const kept = this.bytes[slot];
    if (kept !== undefined && kept.length === length && sameBytes(kept, buf, start)) return this.strings[slot]!;
    const value = buf.toString('utf8', start, end);
    // A copy: the request's buffer belongs to grpc-js and may be reused.
    this.bytes[slot] = Buffer.from(buf.subarray(start, end));
    this.strings[slot] = value;
    return value;
  }
}

function sameBytes(kept: Buffer, buf: Buffer, start: number): boolean {
  for (let i = 0; i < kept.length; i++) if (kept[i] !== buf[start + i]) return false;
  return true;
}
