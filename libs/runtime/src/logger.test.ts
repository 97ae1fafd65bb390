import { Writable } from 'node:stream';
import { createLogger } from './logger';
import { isSensitiveKey } from './redact';

/** A logger whose lines are collected, parsed. */
function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger('test', 'debug', stream), lines };
}

describe('log redaction', () => {
  it('redacts credentials at any depth and in any key spelling, and keeps everything else', () => {
    const { logger, lines } = capture();
    logger.info(
      {
        req: {
          method: 'GET',
          headers: { Authorization: 'Bearer eyJ.secret.sig', COOKIE: 'sid=1', 'X-Api-Key': 'k-123', accept: 'text/html' },
        },
        upstream: { response: { headers: { 'set-cookie': ['a=1'], 'proxy-authorization': 'Basic Zm9vOmJhcg==' } } },
        config: {
          redis: { url: 'redis://r:6379', password: 'hunter2' },
          etcd: { PASSWORD_FILE: '/etc/p' },
          clientSecret: 's3',
          apiKey: 'k',
        },
        calls: [
          { service: 'ledger', xdsToken: 'jwt-xds' },
          { service: 'audit', access_token: 'at', refresh_token: 'rt' },
        ],
        deep: { a: { b: { c: { d: { e: { TRELLIS_ADMIN_TOKEN: 'admin-token-value' } } } } } },
        tokenAudience: 'service-b',
        privateKey: '-----BEGIN PRIVATE KEY-----',
      },
      'request',
    );
    const [line] = lines;
    const text = JSON.stringify(line);
    for (const secret of [
      'eyJ.secret.sig',
      'sid=1',
      'k-123',
      'a=1',
      'Zm9vOmJhcg',
      'hunter2',
      's3',
      'jwt-xds',
      '"at"',
      '"rt"',
      'admin-token-value',
      'BEGIN PRIVATE KEY',
    ])
      expect({ secret, leaked: text.includes(secret) }).toEqual({ secret, leaked: false });
    expect(line).toMatchObject({
      msg: 'request',
      req: { method: 'GET', headers: { Authorization: '[redacted]', 'X-Api-Key': '[redacted]', accept: 'text/html' } },
      config: { redis: { url: 'redis://r:6379', password: '[redacted]' } },
      calls: [{ service: 'ledger', xdsToken: '[redacted]' }, { service: 'audit' }],
      tokenAudience: 'service-b',
    });
  });

  it("redacts a child logger's bindings and leaves the caller's object untouched", () => {
    const { logger, lines } = capture();
    const context = { service: 'front', Authorization: 'Bearer abc' };
    logger.child({ session: { secret: 'x' } }).warn(context, 'call');
    expect(lines[0]).toMatchObject({ session: { secret: '[redacted]' }, service: 'front', Authorization: '[redacted]' });
    expect(context.Authorization).toBe('Bearer abc');
  });

  it('survives cycles and still serializes errors', () => {
    const { logger, lines } = capture();
    const cyclic: Record<string, unknown> = { name: 'loop', token: 't' };
    cyclic['self'] = cyclic;
    logger.error({ err: new Error('boom'), cyclic }, 'failed');
    expect(lines[0]).toMatchObject({ err: { message: 'boom', type: 'Error' }, cyclic: { name: 'loop', token: '[redacted]' } });
  });

  it.each([
    ['authorization', true],
    ['Proxy-Authorization', true],
    ['x-api-key', true],
    ['API_KEY', true],
    ['clientSecret', true],
    ['credentials', true],
    ['tokenAudience', false],
    ['kid', false],
    ['service', false],
  ])('%s is sensitive: %s', (key, sensitive) => {
    expect(isSensitiveKey(key)).toBe(sensitive);
  });
});
