// Request ids and W3C Trace Context (https://www.w3.org/TR/trace-context/), read
// and written the same way by every app, the sidecars' peers and the SDK. Pure:
// nothing here throws on what a caller sends; what cannot be used is undefined,
// and the caller starts a new trace or generates an id.
import { randomBytes } from 'node:crypto';

export const REQUEST_ID_HEADER = 'x-request-id';
export const TRACEPARENT_HEADER = 'traceparent';
export const TRACESTATE_HEADER = 'tracestate';

/** trace-flags bits: sampled (Level 1) and random trace id (Level 2). Others must be sent as zero. */
export const TRACE_FLAG_SAMPLED = 0x01;
export const TRACE_FLAG_RANDOM = 0x02;
const KNOWN_FLAGS = TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM;

export interface TraceParent {
  /** 32 lower-case hex digits, not all zero: the whole trace. */
  traceId: string;
  /** 16 lower-case hex digits, not all zero: the span of the caller. */
  parentId: string;
  /** trace-flags as a number (bit 0: sampled). */
  flags: number;
}

// version "-" trace-id "-" parent-id "-" trace-flags, lower-case hex only. Version 00 is exactly
// these 55 characters; a higher version may continue after another "-", and is read by the same
// fields (the spec's forward compatibility rule). Version ff is invalid.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/s;
const ALL_ZERO = /^0+$/;
/** HTTP's OWS around a header value: spaces and tabs only (a line break is no whitespace here). */
const OPTIONAL_WHITESPACE = /^[ \t]+|[ \t]+$/g;
/** Far beyond any real header; refused before any parsing. */
const MAX_TRACEPARENT_LENGTH = 512;

export function parseTraceparent(value: string | undefined): TraceParent | undefined {
  if (value === undefined || value.length > MAX_TRACEPARENT_LENGTH) return undefined;
  const match = TRACEPARENT.exec(value.replace(OPTIONAL_WHITESPACE, ''));
  if (!match) return undefined;
  const [, version, traceId, parentId, flags, rest] = match as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (ALL_ZERO.test(traceId) || ALL_ZERO.test(parentId)) return undefined;
  return { traceId, parentId, flags: parseInt(flags, 16) };
}

/** The version 00 form; flags this version does not define are sent as zero. */
export function formatTraceparent({ traceId, parentId, flags }: TraceParent): string {
  return `00-${traceId}-${parentId}-${(flags & KNOWN_FLAGS).toString(16).padStart(2, '0')}`;
}

type RandomBytes = (size: number) => Buffer;

/** A call made on behalf of `parent`'s trace: the same trace id, a new span id as the parent of the callee. */
export function childTraceparent(parent: Pick<TraceParent, 'traceId' | 'flags'>, random: RandomBytes = randomBytes): TraceParent {
  return { traceId: parent.traceId, parentId: nonZeroHex(8, random), flags: parent.flags & KNOWN_FLAGS };
}

/** A new trace with a random trace id; `sampled` only when the caller records spans (by default nothing is recorded). */
export function newTraceparent({ sampled = false }: { sampled?: boolean } = {}, random: RandomBytes = randomBytes): TraceParent {
  return {
    traceId: nonZeroHex(16, random),
    parentId: nonZeroHex(8, random),
    flags: TRACE_FLAG_RANDOM | (sampled ? TRACE_FLAG_SAMPLED : 0),
  };
}

function nonZeroHex(size: number, random: RandomBytes): string {
  for (;;) {
    const hex = random(size).toString('hex');
    if (!ALL_ZERO.test(hex)) return hex;
  }
}

// tracestate: up to 32 comma-separated key=value members (lower-case keys, optionally tenant@system;
// printable values without "," or "="). Propagated unchanged when well-formed, dropped otherwise.
const TRACESTATE_MEMBER =
  /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
const MAX_TRACESTATE_MEMBERS = 32;

const MAX_TRACESTATE_LENGTH = 512;

/** The tracestate to pass on (several header values joined), or undefined when any member is malformed. */
export function parseTracestate(value: string | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  const joined = typeof value === 'string' ? value : value.join(',');
  if (joined.length > MAX_TRACESTATE_LENGTH * 2) return undefined;
  const members = joined
    .split(',')
    .map((m) => m.replace(OPTIONAL_WHITESPACE, ''))
    .filter((m) => m !== '');
  if (members.length === 0 || members.length > MAX_TRACESTATE_MEMBERS) return undefined;
  const keys = new Set<string>();
  for (const member of members) {
    if (!TRACESTATE_MEMBER.test(member)) return undefined;
    const key = member.slice(0, member.indexOf('='));
    if (keys.has(key)) return undefined;
    keys.add(key);
  }
  const result = members.join(',');
  return result.length > MAX_TRACESTATE_LENGTH ? undefined : result;
}

/** A caller's request id is taken as is only when it cannot forge log structure or grow without bound. */
const CALLER_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function saneRequestId(value: string | undefined): string | undefined {
  return value !== undefined && CALLER_REQUEST_ID.test(value) ? value : undefined;
}

/**
 * The request id these headers (or call metadata) carry: a sane `x-request-id`, else the trace id of a
 * valid `traceparent`; undefined when neither, and the caller generates one.
 */
export function requestIdIn(headers: Readonly<Record<string, string | readonly string[] | undefined>>): string | undefined {
  return saneRequestId(firstOf(headers[REQUEST_ID_HEADER])) ?? parseTraceparent(firstOf(headers[TRACEPARENT_HEADER]))?.traceId;
}

function firstOf(value: string | readonly string[] | undefined): string | undefined {
  return typeof value === 'string' || value === undefined ? value : value[0];
}
