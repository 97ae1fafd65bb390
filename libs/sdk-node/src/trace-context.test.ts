import { Metadata } from '@grpc/grpc-js';
import { callTraceOf, outgoingTraceHeaders, type CallTrace } from './trace-context';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;
const TRACEPARENT_SHAPE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[0-3]$/;

const metadata = (entries: Record<string, string | string[]>) => {
  const m = new Metadata();
  for (const [key, value] of Object.entries(entries)) for (const v of [value].flat()) m.add(key, v);
  return m;
};

describe('callTraceOf (server side)', () => {
  it("continues the caller's trace, with its request id and tracestate", () => {
    expect(callTraceOf(metadata({ traceparent: TRACEPARENT, 'x-request-id': 'req-1', tracestate: ['a=1', 'b=2'] }))).toEqual({
      requestId: 'req-1',
      traceId: TRACE_ID,
      parentId: PARENT_ID,
      flags: 1,
      tracestate: 'a=1,b=2',
      continued: true,
    });
  });

  it('uses the trace id as the request id when the caller sent no usable x-request-id', () => {
    expect(callTraceOf(metadata({ traceparent: TRACEPARENT, 'x-request-id': 'two words' })).requestId).toBe(TRACE_ID);
  });

  it.each([
    ['no traceparent', {}],
    ['an invalid traceparent (all-zero trace id)', { traceparent: `00-${'0'.repeat(32)}-${PARENT_ID}-01` }],
    ['an upper-case traceparent', { traceparent: TRACEPARENT.toUpperCase() }],
    ['a tracestate without a traceparent', { tracestate: 'a=1' }],
  ])('starts a new trace for %s, never throwing', (_what, entries) => {
    const trace = callTraceOf(metadata(entries));
    expect(trace.continued).toBe(false);
    expect(trace.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(trace.traceId).not.toBe('0'.repeat(32));
    expect(trace.requestId).toBe(trace.traceId);
    expect(trace.tracestate).toBeUndefined();
    expect(trace.flags & 1).toBe(0);
  });

  it('marks the traces it starts as sampled only when asked', () => {
    expect(callTraceOf(metadata({}), { sampleNewTraces: true }).flags & 1).toBe(1);
  });

  it('drops a malformed tracestate but keeps the trace', () => {
    const trace = callTraceOf(metadata({ traceparent: TRACEPARENT, tracestate: 'Not Valid' }));
    expect(trace).toMatchObject({ traceId: TRACE_ID, tracestate: undefined, continued: true });
  });
});

describe('outgoingTraceHeaders (client side)', () => {
  const handling: CallTrace = {
    requestId: 'req-9',
    traceId: TRACE_ID,
    parentId: PARENT_ID,
    flags: 1,
    tracestate: 'vendor=x',
    continued: true,
  };

  it('sends a child of the call being handled: same trace id, a new parent id, its tracestate and request id', () => {
    const headers = outgoingTraceHeaders(new Metadata(), handling);
    const [, traceId, parentId] = TRACEPARENT_SHAPE.exec(headers['traceparent'] ?? '') ?? [];
    expect(traceId).toBe(TRACE_ID);
    expect(parentId).not.toBe(PARENT_ID);
    expect(headers['traceparent']).toMatch(/-01$/);
    expect(headers).toMatchObject({ tracestate: 'vendor=x', 'x-request-id': 'req-9' });
    // Two calls, two spans.
    expect(outgoingTraceHeaders(new Metadata(), handling)['traceparent']).not.toBe(headers['traceparent']);
  });

  it('starts a new trace outside any handled call', () => {
    const headers = outgoingTraceHeaders(new Metadata(), undefined);
    expect(headers['traceparent']).toMatch(TRACEPARENT_SHAPE);
    expect(headers['traceparent']).not.toContain(TRACE_ID);
    expect(Object.keys(headers)).toEqual(['traceparent']);
  });

  it('keeps a valid traceparent and an x-request-id the application set itself, and replaces an invalid one', () => {
    expect(outgoingTraceHeaders(metadata({ traceparent: TRACEPARENT }), handling)).toEqual({});
    expect(outgoingTraceHeaders(metadata({ 'x-request-id': 'own' }), handling)['x-request-id']).toBeUndefined();
    expect(outgoingTraceHeaders(metadata({ traceparent: 'garbage' }), handling)['traceparent']).toContain(TRACE_ID);
  });
});
