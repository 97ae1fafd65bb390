// An xDS request read as its bytes arrive, its node cut down to what the control plane reads (`NODE_FIELDS_READ`)
// before the rest is held: an Envoy's first request is ~52 KB, nearly all of it the node's extensions, and a request
// is otherwise held whole until its last byte (with many streams on a connection, until nearly the connection's
// last byte). The request it gives decodes (wire.ts) to what the whole request decodes to: the node's other fields
// are dropped by their framing, as the decoders already leave them unread and unchecked.
import type { RequestReader } from '@trellis/runtime/grpc';
import { AdsServiceDefinition, NODE_FIELDS_READ } from './wire';

/** The node's field number: SotW's DiscoveryRequest and Delta's DeltaDiscoveryRequest. */
export const NODE_FIELD = { sotw: 2, delta: 1 } as const;

const KEPT_NODE_FIELDS: ReadonlySet<number> = new Set(Object.values(NODE_FIELDS_READ));

/**
 * What a request whose node is framed wrongly becomes: field 0 with wire type 7, which every decoder refuses, as it
 * refuses the request itself (a field running past the node's end, a group, a bad tag).
 */
const UNDECODABLE = Buffer.from([0x07]);

const enum Mode {
  /** Reading a field's tag and, for wire type 2, its length. */
  Head,
  /** Copying (or skipping) the field's remaining `left` bytes. */
  Copy,
  Skip,
  /** Copying (or skipping) a varint field's value, to its last byte. */
  VarintCopy,
  VarintSkip,
  /** A top-level field framed wrongly: the rest is kept as it came, for the decoder to refuse. */
  Verbatim,
  /** The node framed wrongly: the request becomes UNDECODABLE. */
  Broken,
}

/** Appends `value` as a protobuf varint. */
function pushVarint(bytes: number[], value: number): void {
  while (value >= 0x80) {
    bytes.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  bytes.push(value);
}

/** `parseHead`'s answers besides the head's end: more bytes needed, or no field's head. */
const MORE = -1;
const INVALID = -2;

/**
 * Reads the field head (tag and, for wire type 2, length) at `buf[pos, end)` into `into`: its end, or MORE when
 * `end` comes first, or INVALID when it cannot be a field's head (a varint too long, field 0).
 */
function parseHead(buf: Uint8Array, pos: number, end: number, into: { tag: number; length: number }): number {
  let tag = 0;
  for (let i = 0; ; i++) {
    if (pos === end) return MORE;
    if (i === 5) return INVALID;
    const byte = buf[pos++]!;
    tag += (byte & 0x7f) * 2 ** (7 * i);
    if (byte < 0x80) break;
  }
  if (tag < 8) return INVALID;
  into.tag = tag;
  into.length = 0;
  if (tag % 8 !== 2) return pos;
  let length = 0;
  for (let i = 0; ; i++) {
    if (pos === end) return MORE;
    if (i === 5) return INVALID;
    const byte = buf[pos++]!;
    length += (byte & 0x7f) * 2 ** (7 * i);
    if (byte < 0x80) break;
  }
  into.length = length;
  return pos;
}

/** Reads a stream's requests one at a time, each node trimmed as it arrives (see the file's head): one per stream. */
export class NodeTrimmingReader implements RequestReader {
  /** The request's bytes kept, copies: top-level fields as they came and each node once it has ended, trimmed. */
  private kept: Buffer[] = [];
  /** The current node's kept fields, and their bytes. */
  private nodeKept: Buffer[] = [];
  private nodeKeptBytes = 0;
  private inNode = false;
  /** The current node's bytes not yet read, its fields' heads included. */
  private nodeLeft = 0;
  private mode = Mode.Head;
  /** A field head split across chunks, its bytes so far. */
  private head: number[] = [];
  private left = 0;
  private readonly parsed = { tag: 0, length: 0 };

  constructor(private readonly nodeField: number) {}

  read(chunk: Buffer, start: number, end: number): void {
    let pos = start;
    while (pos < end) {
      switch (this.mode) {
        case Mode.Head:
          pos = this.head.length === 0 ? this.readHead(chunk, pos, end) : this.readSplitHead(chunk, pos);
          break;
        case Mode.Copy:
        case Mode.Skip: {
          const to = Math.min(end, pos + this.left);
          if (this.mode === Mode.Copy) this.keep(Buffer.from(chunk.subarray(pos, to)));
          this.left -= to - pos;
          pos = to;
          if (this.left === 0) this.fieldRead();
          break;
        }
        case Mode.VarintCopy:
        case Mode.VarintSkip: {
          const byte = chunk[pos++]!;
          if (this.mode === Mode.VarintCopy) this.keep(Buffer.from([byte]));
          else if (--this.nodeLeft < 0 || ++this.left > 10) {
            this.mode = Mode.Broken;
            break;
          }
          if (byte < 0x80) this.fieldRead();
          break;
        }
        case Mode.Verbatim:
          this.kept.push(Buffer.from(chunk.subarray(pos, end)));
          pos = end;
          break;
        case Mode.Broken:
          pos = end;
          break;
      }
    }
  }

  finish(): Buffer {
    let request: Buffer;
    if (this.mode === Mode.Broken || this.inNode) request = UNDECODABLE;
    else {
      // A field cut off by the request's end stays cut off: the decoder refuses it.
      if (this.head.length > 0) this.kept.push(Buffer.from(this.head));
      request = Buffer.concat(this.kept);
    }
    this.kept = [];
    this.nodeKept = [];
    this.nodeKeptBytes = 0;
    this.inNode = false;
    this.mode = Mode.Head;
    this.head = [];
    return request;
  }

  private keep(bytes: Buffer): void {
    if (!this.inNode) this.kept.push(bytes);
    else {
      this.nodeKept.push(bytes);
      this.nodeKeptBytes += bytes.length;
    }
  }

  /** A head starting at `pos`, read from the chunk when whole in it (the usual case), else begun; gives where reading goes on. */
  private readHead(chunk: Buffer, pos: number, end: number): number {
    const headEnd = parseHead(chunk, pos, end, this.parsed);
    if (headEnd === MORE) {
      for (let i = pos; i < end; i++) this.head.push(chunk[i]!);
      if (this.inNode && this.head.length > this.nodeLeft) this.mode = Mode.Broken;
      return end;
    }
    this.fieldHead(chunk, pos, headEnd === INVALID ? pos + 1 : headEnd, headEnd === INVALID);
    return headEnd === INVALID ? pos + 1 : headEnd;
  }

  /** The next byte of a head split across chunks. */
  private readSplitHead(chunk: Buffer, pos: number): number {
    this.head.push(chunk[pos]!);
    const head = Buffer.from(this.head);
    const headEnd = parseHead(head, 0, head.length, this.parsed);
    if (headEnd === MORE) {
      if (this.inNode && this.head.length > this.nodeLeft) this.mode = Mode.Broken;
    } else {
      this.head = [];
      this.fieldHead(head, 0, head.length, headEnd === INVALID);
    }
    return pos + 1;
  }

  /** A field's head, `buf[start, end)` (`parsed` unless `invalid`): on to the field's value, kept or skipped. */
  private fieldHead(buf: Buffer, start: number, end: number, invalid: boolean): void {
    const headBytes = end - start;
    const { tag, length } = this.parsed;
    const wireType = invalid ? 3 : tag % 8;
    if (wireType === 3 || wireType === 4 || wireType > 5) {
      // Groups, invalid wire types and heads: an Envoy sends none.
      if (this.inNode) this.mode = Mode.Broken;
      else {
        this.mode = Mode.Verbatim;
        this.kept.push(Buffer.from(buf.subarray(start, end)));
      }
      return;
    }
    const field = (tag - wireType) / 8;
    const valueBytes = wireType === 2 ? length : wireType === 1 ? 8 : wireType === 5 ? 4 : 0;
    if (!this.inNode) {
      if (wireType === 2 && field === this.nodeField) {
        this.inNode = true;
        this.nodeLeft = length;
        if (length === 0) this.nodeEnded();
        return;
      }
      this.kept.push(Buffer.from(buf.subarray(start, end)));
      this.valueNext(wireType, valueBytes, true);
      return;
    }
    if (headBytes + valueBytes > this.nodeLeft) {
      this.mode = Mode.Broken;
      return;
    }
    this.nodeLeft -= headBytes + valueBytes;
    const kept = wireType === 2 && KEPT_NODE_FIELDS.has(field);
    if (kept) this.keep(Buffer.from(buf.subarray(start, end)));
    this.valueNext(wireType, valueBytes, kept);
  }

  private valueNext(wireType: number, valueBytes: number, kept: boolean): void {
    if (wireType === 0) {
      this.mode = kept ? Mode.VarintCopy : Mode.VarintSkip;
      this.left = 0;
    } else if (valueBytes === 0) this.fieldRead();
    else {
      this.mode = kept ? Mode.Copy : Mode.Skip;
      this.left = valueBytes;
    }
  }

  private fieldRead(): void {
    this.mode = Mode.Head;
    if (this.inNode && this.nodeLeft === 0) this.nodeEnded();
  }

  /** The node's last byte has been read: it is kept as its kept fields, under a length of theirs. */
  private nodeEnded(): void {
    const head: number[] = [];
    pushVarint(head, this.nodeField * 8 + 2);
    pushVarint(head, this.nodeKeptBytes);
    this.kept.push(Buffer.from(head), ...this.nodeKept);
    this.nodeKept = [];
    this.nodeKeptBytes = 0;
    this.inNode = false;
  }
}

/** The ADS methods' request readers, by path, for `readRequestsAsTheyArrive`: a reader per stream. */
export const NODE_TRIMMING_READERS: ReadonlyMap<string, () => RequestReader> = new Map([
  [AdsServiceDefinition.streamAggregatedResources.path, () => new NodeTrimmingReader(NODE_FIELD.sotw)],
  [AdsServiceDefinition.deltaAggregatedResources.path, () => new NodeTrimmingReader(NODE_FIELD.delta)],
]);
