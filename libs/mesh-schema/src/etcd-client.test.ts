import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { etcdOptionsFromEnv, prefixEnd } from './etcd-client';

describe('prefixEnd', () => {
  it('is the smallest key after the prefix range', () => {
    expect(prefixEnd('/a/').toString()).toBe('/a0');
    expect(prefixEnd('ab')).toEqual(Buffer.from('ac'));
  });
});

describe('etcdOptionsFromEnv', () => {
  let dir: string;
  const base = { TRELLIS_ETCD_ENDPOINTS: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'], TRELLIS_ETCD_PREFIX: '/trellis/' };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trellis-etcd-env-'));
    await writeFile(join(dir, 'ca.pem'), 'CA');
    await writeFile(join(dir, 'cert.pem'), 'CERT');
    await writeFile(join(dir, 'key.pem'), 'KEY');
    await writeFile(join(dir, 'password'), 's3cret\n');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('passes plain endpoints through', () => {
    expect(etcdOptionsFromEnv(base)).toEqual({ endpoints: base.TRELLIS_ETCD_ENDPOINTS });
  });

  it('reads TLS files and the password file (trimmed)', () => {
    const opts = etcdOptionsFromEnv({
      ...base,
      TRELLIS_ETCD_CA_FILE: join(dir, 'ca.pem'),
      TRELLIS_ETCD_CERT_FILE: join(dir, 'cert.pem'),
      TRELLIS_ETCD_KEY_FILE: join(dir, 'key.pem'),
      TRELLIS_ETCD_USERNAME: 'trellis',
      TRELLIS_ETCD_PASSWORD_FILE: join(dir, 'password'),
    });
    expect(opts.tls).toEqual({ ca: Buffer.from('CA'), cert: Buffer.from('CERT'), key: Buffer.from('KEY') });
    expect(opts.auth).toEqual({ username: 'trellis', password: 's3cret' });
  });

  it('uses TLS with system roots for https endpoints without a CA file', () => {
    expect(etcdOptionsFromEnv({ ...base, TRELLIS_ETCD_ENDPOINTS: ['https://etcd.example:2379'] }).tls).toEqual({
      ca: undefined,
      cert: undefined,
      key: undefined,
    });
  });

  it('names the variable whose file cannot be read, and refuses half-configured pairs', () => {
    expect(() => etcdOptionsFromEnv({ ...base, TRELLIS_ETCD_CA_FILE: join(dir, 'missing.pem') })).toThrow(
      /^TRELLIS_ETCD_CA_FILE: cannot read/,
    );
    expect(() => etcdOptionsFromEnv({ ...base, TRELLIS_ETCD_CERT_FILE: join(dir, 'cert.pem') })).toThrow(
      /TRELLIS_ETCD_CERT_FILE and TRELLIS_ETCD_KEY_FILE/,
    );
    expect(() => etcdOptionsFromEnv({ ...base, TRELLIS_ETCD_USERNAME: 'u' })).toThrow(/TRELLIS_ETCD_PASSWORD_FILE/);
  });
});
