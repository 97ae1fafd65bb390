import { BinaryWriter } from '@bufbuild/protobuf/wire';
import type { Any } from './generated/google/protobuf/any';
import { messageTypeRegistry, type MessageType, type UnknownMessage } from './generated/typeRegistry';

const TYPE_URL_PREFIX = 'type.googleapis.com/';

/** The type URL Envoy expects for a message type, e.g. `type.googleapis.com/envoy.config.cluster.v3.Cluster`. */
export function typeUrlOf(type: { readonly $type?: string | undefined }): string {
  if (!type.$type) throw new Error('typeUrlOf: message type has no $type (generate with outputTypeAnnotations)');
  return TYPE_URL_PREFIX + type.$type;
}

/** Messages larger than this are encoded by a writer of their own, which is then dropped (the shared one stays small). */
const SHARED_WRITER_MAX_BYTES = 1 << 20;
/**
 * One writer for every pack when none is under way. A new writer starts at 128 bytes and
 * doubles into a fresh ArrayBuffer until the message fits; translating a listener packs a
 * dozen nested configs, and that growth was most of the encoding's cost. `finish()` copies
 * the bytes out and resets the writer, keeping its grown buffer.
 */
let idleWriter: BinaryWriter | undefined;

/** Packs a message into `google.protobuf.Any` with its Envoy type URL. */
export function packAny<M extends UnknownMessage>(type: MessageType<M>, message: M): Any {
  // Taken while in use: a pack during this one (none today) gets a writer of its own.
  const writer = idleWriter ?? new BinaryWriter();
  idleWriter = undefined;
  // A throwing encode leaves its writer half-written: it is not handed back.
  const bytes = type.encode(message, writer).finish();
  if (bytes.byteLength <= SHARED_WRITER_MAX_BYTES) idleWriter = writer;
  return { $type: 'google.protobuf.Any', typeUrl: typeUrlOf(type), value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

/**
 * Unpacks an `Any` through the generated type registry. The module defining the
 * message must have been imported (importing it registers the type).
 */
export function unpackAny(any: Any): { typeName: string; message: UnknownMessage } {
  const typeName = any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1);
  const type = messageTypeRegistry.get(typeName);
  if (!type) throw new Error(`unpackAny: no generated type registered for ${any.typeUrl}`);
  return { typeName, message: type.decode(any.value) };
}

/** Unpacks an `Any` that must hold the given type; throws on a different type URL. */
export function unpackAnyAs<M extends UnknownMessage>(type: MessageType<M>, any: Any): M {
  const expected = typeUrlOf(type);
  if (any.typeUrl !== expected) throw new Error(`unpackAnyAs: expected ${expected}, got ${any.typeUrl}`);
  return type.decode(any.value);
}
