// Turning etcd bytes into schema-checked values and back. Everything read is
// parsed; everything written is what the schema produced.
import type { IKeyValue } from 'etcd3';
import type { z } from 'zod';
import { InvalidRecordError } from './errors';

export interface Versioned<T> {
  value: T;
  /** The ETag: etcd's mod_revision of the key, as a decimal string. */
  modRevision: string;
  createRevision: string;
}

/** zod issues as `path: message` strings, the way error responses name fields. */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => `${issue.path.length ? issue.path.join('.') : '(value)'}: ${issue.message}`);
}

/** Parses a stored value; throws InvalidRecordError naming the key. */
export function decodeValue<S extends z.ZodType>(schema: S, key: string, raw: Buffer): z.output<S> {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new InvalidRecordError(key, [`not JSON: ${(err as Error).message}`]);
  }
  const result = schema.safeParse(json);
  if (!result.success) throw new InvalidRecordError(key, describeIssues(result.error));
  return result.data;
}

export function decodeKv<S extends z.ZodType>(schema: S, kv: IKeyValue): Versioned<z.output<S>> {
  const key = kv.key.toString('utf8');
  return { value: decodeValue(schema, key, kv.value), modRevision: kv.mod_revision, createRevision: kv.create_revision };
}

/** Validates `value` with `schema` and serializes what the schema produced. */
export function encodeValue<S extends z.ZodType>(schema: S, key: string, value: z.input<S>): { value: z.output<S>; bytes: Buffer } {
  const result = schema.safeParse(value);
  if (!result.success) throw new InvalidRecordError(key, describeIssues(result.error));
  return { value: result.data, bytes: Buffer.from(JSON.stringify(result.data)) };
}
