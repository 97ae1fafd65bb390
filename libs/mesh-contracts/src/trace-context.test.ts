import {
  childTraceparent,
  formatTraceparent,
  newTraceparent,
  parseTraceparent,
  parseTracestate,
  requestIdIn,
  saneRequestId,
  TRACE_FLAG_RANDOM,
  TRACE_FLAG_SAMPLED,
} from './trace-context';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const VALID = `00-${TRACE_ID}-${PARENT_ID}-01`;

/** Deterministic "random" bytes: 0x11, 0x12, … */
const counting = () => {
  let next = 0x11;
  return (size: number) => Buffer.from(Array.from({ length: size }, () => next++ & 0xff));
};

describe('parseTraceparent (W3C Trace Context)', () => {
  it('reads a version 00 traceparent', () => {
    expect(parseTraceparent(VALID)).toEqual({ traceId: TRACE_ID, parentId: PARENT_ID, flags: 1 });
    expect(parseTraceparent(` ${VALID}\t`)).toEqual({ traceId: TRACE_ID, parentId: PARENT_ID, flags: 1 });
    expect(parseTraceparent(`00-${TRACE_ID}-${PARENT_ID}-00`)?.flags).toBe(0);
  });

  it.each([
    ['nothing', undefined],
    ['an empty value', ''],
    ['version ff', `ff-${TRACE_ID}-${PARENT_ID}-01`],
    ['an all-zero trace id', `00-${'0'.repeat(32)}-${PARENT_ID}-01`],
    ['an all-zero parent id', `00-${TRACE_ID}-${'0'.repeat(16)}-01`],
    ['upper-case hex', `00-${TRACE_ID.toUpperCase()}-${PARENT_ID}-01`],
    ['an upper-case version', `0A-${TRACE_ID}-${PARENT_ID}-01`],
    ['a short trace id', `00-${TRACE_ID.slice(1)}-${PARENT_ID}-01`],
    ['a long parent id', `00-${TRACE_ID}-${PARENT_ID}0-01`],
    ['non-hex flags', `00-${TRACE_ID}-${PARENT_ID}-0x`],
    ['one-digit flags', `00-${TRACE_ID}-${PARENT_ID}-1`],
    ['version 00 with more fields', `${VALID}-extra`],
    ['a higher version with a bad continuation', `01-${TRACE_ID}-${PARENT_ID}-01x`],
    ['a higher version shorter than version 00', `01-${TRACE_ID}-${PARENT_ID}-0`],
    ['other separators', `00_${TRACE_ID}_${PARENT_ID}_01`],
    ['a huge value', `00-${TRACE_ID}-${PARENT_ID}-01-${'a'.repeat(10_000)}`.replace(/^00/, '00')],
  ])('refuses %s', (_what, value) => {
    expect(parseTraceparent(value)).toBeUndefined();
  });

  it('reads a higher version by the version 00 fields, ignoring what follows a dash', () => {
    expect(parseTraceparent(`cc-${TRACE_ID}-${PARENT_ID}-01-what-the-future-holds`)).toEqual({
      traceId: TRACE_ID,
      parentId: PARENT_ID,
      flags: 1,
    });
    expect(parseTraceparent(`01-${TRACE_ID}-${PARENT_ID}-03`)?.flags).toBe(3);
  });
});

describe('childTraceparent', () => {
  it('keeps the trace id, draws a new parent id and keeps only the known flags', () => {
    const parent = { traceId: TRACE_ID, parentId: PARENT_ID, flags: 0xff };
    const child = childTraceparent(parent, counting());
    expect(child).toEqual({ traceId: TRACE_ID, parentId: '1112131415161718', flags: TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM });
    expect(formatTraceparent(child)).toBe(`00-${TRACE_ID}-1112131415161718-03`);
  });

  it('never draws the invalid all-zero parent id', () => {
    const zeroFirst = (() => {
      let calls = 0;
      return (size: number) => (calls++ === 0 ? Buffer.alloc(size) : Buffer.alloc(size, 0xab));
    })();
    expect(childTraceparent({ traceId: TRACE_ID, flags: 0 }, zeroFirst).parentId).toBe('abababababababab');
  });
});

describe('newTraceparent', () => {
  it('starts a random trace, not sampled unless asked (nothing is recorded)', () => {
    const fresh = newTraceparent({ sampled: false }, counting());
    expect(fresh).toEqual({ traceId: '1112131415161718191a1b1c1d1e1f20', parentId: '2122232425262728', flags: TRACE_FLAG_RANDOM });
    expect(parseTraceparent(formatTraceparent(fresh))).toEqual(fresh);
    expect(newTraceparent({ sampled: true }).flags).toBe(TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM);
    expect(newTraceparent().traceId).not.toBe(newTraceparent().traceId);
  });
});

describe('parseTracestate', () => {
  it('keeps a well-formed list', () => {
    expect(parseTracestate('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE')).toBe('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE');
    expect(parseTracestate(' tenant@vendor=x , b=2 ')).toBe('tenant@vendor=x,b=2');
    expect(parseTracestate(['a=1', 'b=2'])).toBe('a=1,b=2');
  });

  it.each([
    ['nothing', undefined],
    ['a member without a value', 'rojo'],
    ['an upper-case key', 'Rojo=1'],
    ['a control character', 'a=1\n'],
    ['a duplicate key', 'a=1,a=2'],
    ['more than 32 members', Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(',')],
    ['an overlong value', `a=${'v'.repeat(257)}`],
    ['a list over 512 characters', Array.from({ length: 3 }, (_, i) => `k${i}=${'v'.repeat(200)}`).join(',')],
  ])('drops %s', (_what, value) => {
    expect(parseTracestate(value)).toBeUndefined();
  });
});

describe('request ids', () => {
  it('takes a sane caller id as is and refuses anything that could forge log structure', () => {
    expect(saneRequestId('req-42.a:b')).toBe('req-42.a:b');
    expect(saneRequestId('x\n{"level":60}')).toBeUndefined();
    expect(saneRequestId('a'.repeat(129))).toBeUndefined();
    expect(saneRequestId('')).toBeUndefined();
  });

  it('finds the id in x-request-id, else in the traceparent, else nowhere', () => {
    expect(requestIdIn({ 'x-request-id': 'req-1', traceparent: VALID })).toBe('req-1');
    expect(requestIdIn({ 'x-request-id': 'bad id', traceparent: VALID })).toBe(TRACE_ID);
    expect(requestIdIn({ 'x-request-id': ['req-2'] })).toBe('req-2');
    expect(requestIdIn({ traceparent: `00-${'0'.repeat(32)}-${PARENT_ID}-01` })).toBeUndefined();
    expect(requestIdIn({})).toBeUndefined();
  });
});
