import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { RequestHandler } from 'express';
import helmet from 'helmet';
import { helmetHeaderSet, registryHelmetOptions, securityHeaders } from './security-headers';

/** Every response header of GET / through `middleware` (x-powered-by left on, so helmet's removal shows), but Date. */
async function headersThrough(middleware: RequestHandler, status = 200): Promise<Record<string, string>> {
  const app = express();
  app.use(middleware);
  app.get('/', (_req, res) => {
    res.status(status).json({ ok: true });
  });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await res.arrayBuffer();
    const headers = Object.fromEntries(res.headers);
    delete headers['date'];
    return headers;
  } finally {
    server.close();
  }
}

describe('securityHeaders', () => {
  it.each([false, true])('sends exactly the headers helmet sends (https: %s)', async (https) => {
    const expected = await headersThrough(helmet(registryHelmetOptions(https)));
    expect(await headersThrough(securityHeaders(registryHelmetOptions(https)))).toEqual(expected);
    // The comparison covers helmet's work: its CSP, and X-Powered-By removed.
    expect(expected['content-security-policy']).toContain("default-src 'none'");
    expect(expected['x-powered-by']).toBeUndefined();
    expect('strict-transport-security' in expected).toBe(https);
  });

  it('sends helmet defaults exactly as helmet does', async () => {
    expect(await headersThrough(securityHeaders({}))).toEqual(await headersThrough(helmet({})));
  });

  it('refuses options that make the headers depend on the request', () => {
    const nonce = (req: unknown) => `'nonce-${String((req as { url?: string }).url)}'`;
    expect(() => helmetHeaderSet({ contentSecurityPolicy: { directives: { scriptSrc: [nonce] } } })).toThrow(/read the request/);
  });

  it('refuses options helmet itself rejects', () => {
    expect(() => helmetHeaderSet({ contentSecurityPolicy: { directives: { defaultSrc: ["'none';"] } } })).toThrow();
  });
});
