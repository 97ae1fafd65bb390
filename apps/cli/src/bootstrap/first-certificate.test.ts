// Which answers of the mesh CA the init container waits out and which stop it at once,
// against a local HTTP server answering POST /v1/certificate as scripted (the real CA is
// apps/cli/test/bootstrap-xds-token.test.ts).
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backoff } from '../agent/backoff';
import { BootstrapError } from './envoy-bootstrap';
import { obtainFirstCertificateRetrying } from './first-certificate';

describe('obtainFirstCertificateRetrying', () => {
  let server: Server;
  let caUrl: string;
  let answers: Array<{ status: number; body: string }>;
  const authorizations: string[] = [];
  let dir: string;

  beforeAll(async () => {
    server = createServer((req, res) => {
      authorizations.push(req.headers.authorization ?? '');
      req.resume();
      const answer = answers.shift() ?? { status: 500, body: 'script exhausted' };
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    caUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));
  beforeEach(async () => {
    authorizations.length = 0;
    dir = join(await mkdtemp(join(tmpdir(), 'first-cert-')), 'workload');
  });
  afterEach(() => rm(join(dir, '..'), { recursive: true, force: true }));

  const obtain = (retryForMs: number, caAt = caUrl) => {
    const waits: number[] = [];
    const result = obtainFirstCertificateRetrying(
      { caUrl: caAt, service: 'orders', proof: { kind: 'credential', secret: 'orders-secret-0123456789' }, dir },
      { retryForMs, backoff: new Backoff({ baseMs: 10, maxMs: 10, random: () => 0.5 }), sleep: async (ms) => void waits.push(ms) },
    );
    return { result, waits };
  };

  it('waits out an authz that is not ready (503, 429), then stops at a refusal (401) without writing anything', async () => {
    answers = [
      { status: 503, body: '{"title":"not ready"}' },
      { status: 429, body: '{"title":"slow down"}' },
      { status: 401, body: '{"title":"Unauthenticated","detail":"unknown service credential"}' },
    ];
    const { result, waits } = obtain(60_000);
    const err = (await result.catch((e: unknown) => e)) as BootstrapError;
    expect(err).toBeInstanceOf(BootstrapError);
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/refused a certificate for orders: 401 .*unknown service credential/);
    expect(waits).toHaveLength(2);
    // Proven as the agent proves itself: Basic service:secret.
    expect(new Set(authorizations)).toEqual(new Set([`Basic ${Buffer.from('orders:orders-secret-0123456789').toString('base64')}`]));
    await expect(readdir(dir)).rejects.toThrow();
  });

  it.each([403, 400, 404])('does not retry %i', async (status) => {
    answers = [{ status, body: '{}' }];
    const { result, waits } = obtain(60_000);
    await expect(result).rejects.toMatchObject({ retryable: false });
    expect(waits).toEqual([]);
  });

  it('an answer that is no certificate is not retried either', async () => {
    answers = [{ status: 200, body: '{"certificateChain":"nope"}' }];
    const { result, waits } = obtain(60_000);
    await expect(result).rejects.toMatchObject({ retryable: false, message: expect.stringMatching(/without a certificate chain/) });
    expect(waits).toEqual([]);
  });

  it('keeps asking a mesh CA nobody listens on until --retry-for runs out, saying so', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const { result, waits } = obtain(0, deadUrl);
    await expect(result).rejects.toMatchObject({
      message: expect.stringMatching(/POST http:\/\/127\.0\.0\.1:\d+\/v1\/certificate: ECONNREFUSED/),
    });
    expect(waits).toEqual([]);
    // The clock moves only by the waits, so the count does not depend on how loaded the machine is.
    let slept = 0;
    const start = Date.now();
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => start + slept);
    try {
      const waits: number[] = [];
      const retrying = obtainFirstCertificateRetrying(
        { caUrl: deadUrl, service: 'orders', proof: { kind: 'credential', secret: 'orders-secret-0123456789' }, dir },
        {
          retryForMs: 1_000,
          backoff: new Backoff({ baseMs: 100, maxMs: 100, random: () => 0.5 }),
          sleep: async (ms) => void (waits.push(ms), (slept += ms)),
        },
      );
      const err = (await retrying.catch((e: unknown) => e)) as BootstrapError;
      expect([err.retryable, err.message]).toEqual([false, expect.stringMatching(/ECONNREFUSED \(gave up after 21 attempts\)$/)]);
      // 1 s of 50 ms waits: 20 waits, 21 attempts.
      expect(waits).toEqual(Array(20).fill(50));
    } finally {
      clock.mockRestore();
    }
  });
});
