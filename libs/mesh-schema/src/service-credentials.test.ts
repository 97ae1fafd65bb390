import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServiceCredentials } from './service-credentials';

const basic = (user: string, secret: string) => `Basic ${Buffer.from(`${user}:${secret}`).toString('base64')}`;

describe('ServiceCredentials', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'service-creds-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reads service:secret lines and authenticates Basic credentials', async () => {
    const file = join(dir, 'callers');
    await writeFile(file, '# callers outside Envoy\nbilling:0123456789abcdef-billing\nreports:0123456789abcdef:with-colon\n');
    const creds = await ServiceCredentials.load(file);
    expect(creds.size).toBe(2);
    expect(creds.authenticate(basic('billing', '0123456789abcdef-billing'))).toBe('billing');
    expect(creds.authenticate(basic('reports', '0123456789abcdef:with-colon'))).toBe('reports');
    expect(creds.authenticate(basic('billing', 'wrong-secret-0000000'))).toBeUndefined();
    expect(creds.authenticate(basic('ghost', '0123456789abcdef-billing'))).toBeUndefined();
    expect(creds.authenticate('Bearer xyz')).toBeUndefined();
    expect(creds.authenticate(undefined)).toBeUndefined();
  });

  it('reads a directory of files named by service (a mounted Secret)', async () => {
    const secrets = join(dir, 'secrets');
    await (await import('node:fs/promises')).mkdir(secrets);
    await writeFile(join(secrets, 'billing'), 'a-long-enough-secret\n');
    const creds = await ServiceCredentials.load(secrets);
    expect(creds.authenticate(basic('billing', 'a-long-enough-secret'))).toBe('billing');
  });

  it('refuses short secrets and names that are not services', () => {
    expect(() => ServiceCredentials.fromEntries([['billing', 'short']])).toThrow(/shorter than 16/);
    expect(() => ServiceCredentials.fromEntries([['Not_A_Service', '0123456789abcdef']])).toThrow(/not a service name/);
  });
});
