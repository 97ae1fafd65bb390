import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExponentialBackoff } from 'cockatiel';
import { EtcdWatchStreamEnded, GRPCResourceExhastedError, GRPCUnavailableError } from 'etcd3';
import { etcdOptionsFromEnv, etcdStreamErrorCode, prefixEnd, WatchReconnectBackoff } from './etcd-client';

describe('prefixEnd', () => {
  it('is the smallest key after the prefix range', () => {
    expect(prefixEnd('/a/').toString()).toBe('/a0');
    expect(prefixEnd('ab')).toEqual(Buffer.from('ac'));
  });
});

describe('etcdStreamErrorCode', () => {
  it('names the gRPC status of a broken watch stream, and nothing unbounded', () => {
    expect(etcdStreamErrorCode(new GRPCUnavailableError('14 UNAVAILABLE: Connection dropped'))).toBe('unavailable');
    expect(etcdStreamErrorCode(new GRPCResourceExhastedError('8 RESOURCE_EXHAUSTED: Bandwidth exhausted or memory limit exceeded'))).toBe(
      'resource_exhausted',
    );
    expect(etcdStreamErrorCode(new EtcdWatchStreamEnded())).toBe('ended');
    expect(etcdStreamErrorCode(new Error('99 NOT_A_STATUS: x'))).toBe('other');
    expect(etcdStreamErrorCode(new Error('connect ECONNREFUSED 127.0.0.1:2379'))).toBe('other');
  });
});

describe('WatchReconnectBackoff', () => {
  interface Step {
    duration: number;
    next(): Step | undefined;
  }
  const steps = (durations: number[]): Step => {
    const at = (i: number): Step => ({ duration: durations[i]!, next: () => (i + 1 < durations.length ? at(i + 1) : undefined) });
    return at(0);
  };

  it('waits as its backoff says while a watch is attached', () => {
    const first = new WatchReconnectBackoff(steps([0, 100, 400]), () => false).next()!;
    expect([first.duration, first.next()!.duration, first.next()!.next()]).toEqual([100, 400, undefined]);
  });

  it('reopens at once when no watch is left, so no timer outlives a closed client', () => {
    let idle = false;
    const backoff = new WatchReconnectBackoff(new ExponentialBackoff({ initialDelay: 100, maxDelay: 2_000 }), () => idle).next()!.next()!;
    expect(backoff.duration).toBeGreaterThan(0);
    idle = true;
    expect([backoff.duration, backoff.next()!.duration]).toEqual([0, 0]);
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
