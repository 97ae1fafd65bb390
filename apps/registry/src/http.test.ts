import { request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import fc from 'fast-check';
import { WrittenValues } from '@trellis/mesh-schema';
import { jsonBody, jsonWithFields, sendWriteJson, type AnswerFields } from './http';

// sendWriteJson skips express's `send`: it must put the same status, headers and bytes on the wire as
// res.json, but for express's weak ETag of the body, which a write's answer does not carry.
describe('sendWriteJson', () => {
  let server: Server;
  let port: number;

  beforeAll(async () => {
    const app = express();
    app.disable('x-powered-by');
    app.disable('etag');
    app.use(express.json({ limit: '1mb' }));
    const respond =
      (fast: boolean): express.RequestHandler =>
      (req, res) => {
        const {
          status,
          value,
          etag,
          fields = {},
          written,
        } = req.body as {
          status: number;
          value: object;
          etag: boolean;
          fields?: AnswerFields;
          written?: boolean;
        };
        res.setHeader('X-Before', 'set earlier, by middleware');
        res.location('/api/v1/services/x');
        // A service write sets its own ETag; a registration sets none, and its answer carries none.
        if (etag) res.setHeader('ETag', '"42"');
        // A record the store wrote: its bytes are kept, and the answer is made from them.
        if (written) new WrittenValues().remember('/k', Buffer.from(JSON.stringify(value)), value);
        if (fast) sendWriteJson(res, status, value, fields);
        else res.status(status).json({ ...value, ...fields });
      };
    app.post('/express', respond(false));
    app.post('/fast', respond(true));
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(() => new Promise((resolve) => server.close(resolve)));

  function post(path: string, payload: unknown): Promise<{ status: number; headers: string[]; body: Buffer }> {
    const bytes = Buffer.from(JSON.stringify(payload));
    return new Promise((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port, path, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': bytes.length } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            // Every header in wire order, the Date (a clock) left out.
            const headers = res.rawHeaders.filter((_, i, all) => (i % 2 === 0 ? all[i] : all[i - 1])!.toLowerCase() !== 'date');
            resolve({ status: res.statusCode!, headers, body: Buffer.concat(chunks) });
          });
        },
      );
      req.on('error', reject);
      req.end(bytes);
    });
  }

  it('answers exactly as res.json does, for any JSON object and a write status', async () => {
    const value = fc.dictionary(fc.string({ unit: 'grapheme' }), fc.jsonValue(), { maxKeys: 8 });
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(200, 201), value, fc.boolean(), async (status, body, etag) => {
        const viaExpress = await post('/express', { status, value: body, etag });
        const fast = await post('/fast', { status, value: body, etag });
        expect(fast.status).toBe(status);
        expect(fast.headers).toEqual(viaExpress.headers);
        expect(fast.body.equals(viaExpress.body)).toBe(true);
      }),
      { numRuns: Number(process.env['TRELLIS_PROPERTY_RUNS'] ?? 100) },
    );
  });

  it('answers exactly as res.json does with fields added, for records written or not', async () => {
    const value = fc.dictionary(fc.string({ unit: 'grapheme' }), fc.jsonValue(), { maxKeys: 8 });
    const fields = fc.dictionary(fc.constantFrom('modRevision', 'ttlSeconds', 'heartbeat', 'id', '7'), fc.oneof(fc.string(), fc.integer()));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(200, 201), value, fc.boolean(), fields, fc.boolean(), async (status, body, etag, added, written) => {
        const viaExpress = await post('/express', { status, value: body, etag, fields: added, written });
        const fast = await post('/fast', { status, value: body, etag, fields: added, written });
        expect(fast.status).toBe(status);
        expect(fast.headers).toEqual(viaExpress.headers);
        expect(fast.body.equals(viaExpress.body)).toBe(true);
      }),
      { numRuns: Number(process.env['TRELLIS_PROPERTY_RUNS'] ?? 100) },
    );
  });

  it("sends no ETag when the route set none, whatever the app's etag setting", async () => {
    const app = express();
    app.post('/', (_req, res) => sendWriteJson(res, 201, { id: 'i-1' }, { ttlSeconds: 30 }));
    const other = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => other.once('listening', resolve));
    try {
      const res = await fetch(`http://127.0.0.1:${(other.address() as AddressInfo).port}/`, { method: 'POST' });
      expect(res.status).toBe(201);
      expect(res.headers.get('etag')).toBeNull();
      expect(await res.json()).toEqual({ id: 'i-1', ttlSeconds: 30 });
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });

  it('sends a multi-byte body with its byte length', async () => {
    const fast = await post('/fast', { status: 201, value: { description: 'Zürich → 東京 🚀' }, etag: true });
    expect(fast.headers).toEqual(expect.arrayContaining(['Content-Length', String(fast.body.length)]));
    expect(JSON.parse(fast.body.toString('utf8'))).toEqual({ description: 'Zürich → 東京 🚀' });
  });
});

// jsonBody reads a plain JSON request itself: the body it hands on, and the errors, must be body-parser's.
describe('jsonBody', () => {
  const LIMIT = 300;
  let server: Server;
  let port: number;

  beforeAll(async () => {
    const app = express();
    const [requireJson, readJson] = jsonBody(LIMIT);
    const bodyParser = express.json({ limit: LIMIT, strict: true, type: ['application/json', 'application/*+json'] });
    const echo: express.RequestHandler = (req, res) => {
      res.json({ body: 'body' in req ? ((req.body as unknown) ?? '(undefined)') : '(absent)' });
    };
    app.post('/body-parser', requireJson!, bodyParser, echo);
    app.post('/json-body', requireJson!, readJson!, echo);
    // As in the app, where authentication (a promise) runs first: the whole request is in when the body is read.
    const later: express.RequestHandler = (_req, _res, next) => setImmediate(next);
    app.post('/json-body-later', later, requireJson!, readJson!, echo);
    app.use(((err, _req, res, _next) => {
      const { type, status, limit } = err as { type?: string; status?: number; limit?: number };
      res.status(299).json({ error: { type: type ?? '(none)', status: status ?? '(none)', limit: limit ?? '(none)' } });
    }) as express.ErrorRequestHandler);
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(() => new Promise((resolve) => server.close(resolve)));

  function send(path: string, contentType: string | undefined, bytes: Buffer): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { 'content-length': bytes.length };
      if (contentType !== undefined) headers['content-type'] = contentType;
      const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8') }));
      });
      req.on('error', reject);
      req.end(bytes);
    });
  }

  const whitespace = fc.string({ unit: fc.constantFrom(' ', '\t', '\n', '\r'), maxLength: 3 });
  const bodies = fc.oneof(
    fc.tuple(whitespace, fc.jsonValue({ maxDepth: 3 }), whitespace).map(([a, v, b]) => Buffer.from(a + JSON.stringify(v) + b)),
    fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(v))])),
    fc
      .string({ unit: fc.constantFrom('{', '}', '[', ']', '"', ',', ':', ' ', '1', 'a', '\\', '\n', '\uFEFF', 'é') })
      .map((s) => Buffer.from(s)),
    fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
    fc.constant(Buffer.alloc(0)),
  );
  const contentTypes = fc.constantFrom(
    'application/json',
    'application/merge-patch+json',
    'Application/JSON',
    'application/json; charset=utf-8',
    'application/json; charset=latin1',
    'text/plain',
    undefined,
  );

  it('hands on what body-parser would, or fails with the same error type and status', async () => {
    await fc.assert(
      fc.asyncProperty(contentTypes, bodies, async (contentType, bytes) => {
        const expected = await send('/body-parser', contentType, bytes);
        const actual = await send('/json-body', contentType, bytes);
        expect(actual).toEqual(expected);
        // The request complete when the body is read: taken from the stream's buffer at once.
        expect(await send('/json-body-later', contentType, bytes)).toEqual(expected);
      }),
      { numRuns: Number(process.env['TRELLIS_PROPERTY_RUNS'] ?? 300) },
    );
  });

  it('leaves a body over the limit to body-parser: 413', async () => {
    const big = Buffer.from(JSON.stringify({ description: 'x'.repeat(LIMIT) }));
    const actual = await send('/json-body', 'application/json', big);
    expect(JSON.parse(actual.body)).toEqual({ error: { type: 'entity.too.large', status: 413, limit: LIMIT } });
  });
});

describe('jsonWithFields', () => {
  const stringified = (value: object, fields: AnswerFields) => JSON.stringify({ ...value, ...fields });

  it('is JSON.stringify of the value with the fields spread after it, for any record written or not', () => {
    const value = fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 8 });
    // Names the record may have too, and array indexes, which JavaScript orders first.
    const fields = fc.dictionary(
      fc.oneof(fc.constantFrom('modRevision', 'a', '0', '12', '01'), fc.string()),
      fc.oneof(fc.string(), fc.integer()),
    );
    fc.assert(
      fc.property(value, fields, fc.boolean(), (record, added, written) => {
        if (written) new WrittenValues().remember('/k', Buffer.from(JSON.stringify(record)), record);
        expect(jsonWithFields(record, added).toString()).toBe(stringified(record, added));
      }),
      { numRuns: Number(process.env['TRELLIS_PROPERTY_RUNS'] ?? 300) },
    );
  });

  it('answers a written record from the bytes the store wrote, with the fields appended', () => {
    const record = { service: 'orders', id: 'i-1', port: 8080, labels: { zone: 'a' } };
    const bytes = Buffer.from(JSON.stringify(record));
    new WrittenValues().remember('/instances/orders/i-1', bytes, record);
    const answer = jsonWithFields(record, { ttlSeconds: 30, heartbeat: '/hb' });
    expect(Buffer.isBuffer(answer)).toBe(true);
    expect(answer.toString()).toBe('{"service":"orders","id":"i-1","port":8080,"labels":{"zone":"a"},"ttlSeconds":30,"heartbeat":"/hb"}');
    // The bytes are used once (the mirror may keep the record for long, not its bytes too): then it is serialized.
    expect(jsonWithFields(record, {})).toBe(JSON.stringify(record));
    new WrittenValues().remember('/instances/orders/i-1', bytes, record);
    // No fields: the written bytes themselves.
    expect(jsonWithFields(record, {})).toBe(bytes);
  });

  it('serializes a field the record already has in place, as spreading does', () => {
    const record = { modRevision: 'stale', a: 1 };
    new WrittenValues().remember('/k', Buffer.from(JSON.stringify(record)), record);
    expect(jsonWithFields(record, { modRevision: '9' })).toBe('{"modRevision":"9","a":1}');
  });
});
