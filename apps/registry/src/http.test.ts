import { request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import fc from 'fast-check';
import { sendWriteJson } from './http';

// sendWriteJson skips express's `send`: it must put the same status, headers and bytes on the wire as res.json.
describe('sendWriteJson', () => {
  let server: Server;
  let port: number;

  beforeAll(async () => {
    const app = express();
    app.disable('x-powered-by');
    app.use(express.json({ limit: '1mb' }));
    const respond =
      (fast: boolean): express.RequestHandler =>
      (req, res) => {
        const { status, value, etag } = req.body as { status: number; value: object; etag: boolean };
        res.setHeader('X-Before', 'set earlier, by middleware');
        res.location('/api/v1/services/x');
        // A service write sets its own ETag; without one (a registration) express makes one from the body.
        if (etag) res.setHeader('ETag', '"42"');
        if (fast) sendWriteJson(res, status, value);
        else res.status(status).json(value);
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

  it('makes the weak ETag express would when the route set none', async () => {
    const fast = await post('/fast', { status: 201, value: { id: 'i-1' }, etag: false });
    expect(fast.headers).toEqual(expect.arrayContaining(['ETag', expect.stringMatching(/^W\/"/)]));
  });

  it('sends a multi-byte body with its byte length', async () => {
    const fast = await post('/fast', { status: 201, value: { description: 'Zürich → 東京 🚀' }, etag: true });
    expect(fast.headers).toEqual(expect.arrayContaining(['Content-Length', String(fast.body.length)]));
    expect(JSON.parse(fast.body.toString('utf8'))).toEqual({ description: 'Zürich → 東京 🚀' });
  });
});
