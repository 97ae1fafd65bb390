import express from 'express';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger } from './logger';
import { parseTraceparent, requestIdFor, requestIds } from './request-id';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

describe('requestIdFor', () => {
  it.each([
    ['a caller X-Request-Id', { 'x-request-id': 'req-42.a:b' }, 'req-42.a:b'],
    ['the trace id of a traceparent', { traceparent: TRACEPARENT }, TRACE_ID],
    ['X-Request-Id before traceparent', { 'x-request-id': 'req-1', traceparent: TRACEPARENT }, 'req-1'],
  ])('takes %s', (_what, headers, id) => {
    expect(requestIdFor(headers)).toBe(id);
  });

  it.each([
    ['a forged log line', { 'x-request-id': 'x\n{"level":60}' }],
    ['an overlong id', { 'x-request-id': 'a'.repeat(129) }],
    ['a malformed traceparent', { traceparent: '00-xyz-00f067aa0ba902b7-01' }],
    ['an all-zero trace id', { traceparent: `00-${'0'.repeat(32)}-00f067aa0ba902b7-01` }],
    ['nothing', {}],
  ])('generates a UUID for %s', (_what, headers) => {
    expect(requestIdFor(headers)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('parses a W3C traceparent', () => {
    expect(parseTraceparent(TRACEPARENT)).toEqual({ traceId: TRACE_ID, parentId: '00f067aa0ba902b7', flags: 1 });
    expect(parseTraceparent(`ff-${TRACE_ID}-00f067aa0ba902b7-01`)).toBeUndefined();
  });
});

describe('requestIds middleware (a real express server)', () => {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger(
    'test',
    'debug',
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    }),
  );
  let url: string;
  let close: () => void;
  beforeAll(async () => {
    const app = express();
    app.use(requestIds(logger));
    app.get('/work', (_req, res) => {
      (res.locals['log'] as typeof logger).info('working');
      res.json({ requestId: res.locals['requestId'] });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () => server.close();
  });
  afterAll(() => close());
  beforeEach(() => (lines.length = 0));

  it("echoes the caller's id and traceparent, and every log line of the request carries it", async () => {
    const res = await fetch(`${url}/work`, { headers: { 'x-request-id': 'from-the-edge-1', traceparent: TRACEPARENT } });
    expect(res.headers.get('x-request-id')).toBe('from-the-edge-1');
    expect(res.headers.get('traceparent')).toBe(TRACEPARENT);
    expect(await res.json()).toEqual({ requestId: 'from-the-edge-1' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.map((l) => [l['msg'], l['requestId']])).toEqual([
      ['working', 'from-the-edge-1'],
      ['request', 'from-the-edge-1'],
    ]);
    expect(lines[1]).toMatchObject({ method: 'GET', path: '/work', status: 200 });
  });

  it('generates and returns an id when the caller sent none', async () => {
    const res = await fetch(`${url}/work`);
    const id = res.headers.get('x-request-id');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await res.json()).toEqual({ requestId: id });
    expect(res.headers.get('traceparent')).toBeNull();
  });
});
