import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReloadingServiceCredentials, ServiceCredentials } from './service-credentials';

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

describe('ReloadingServiceCredentials', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'service-creds-reload-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  /** The file behind `dir/callers` replaced by a symlink swap (a Kubernetes Secret volume): its inode changes. */
  async function swapIn(content: string): Promise<void> {
    const version = join(dir, `..v${Math.random().toString(36).slice(2)}`);
    await mkdir(version);
    await writeFile(join(version, 'callers'), content);
    await symlink(version, join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  }

  it('follows a swapped file, and keeps the whole last good set when the new one is broken or gone', async () => {
    await swapIn('billing:0123456789abcdef-billing\nreports:0123456789abcdef-reports\n');
    await symlink(join('..data', 'callers'), join(dir, 'callers'));
    const results: string[] = [];
    const creds = await ReloadingServiceCredentials.start(join(dir, 'callers'), {
      pollMs: 0,
      onReload: (result, { size, error }) => results.push(`${result}:${size}${error ? `:${error.message}` : ''}`),
    });
    expect(creds.size).toBe(2);
    expect(await creds.reload()).toBe('unchanged');

    await swapIn('billing:0123456789abcdef-billing\n');
    expect(await creds.reload()).toBe('ok');
    expect(creds.authenticate(basic('reports', '0123456789abcdef-reports'))).toBeUndefined();
    expect(creds.authenticate(basic('billing', '0123456789abcdef-billing'))).toBe('billing');

    // Broken: a line that is not an entry. The revoked reports secret in it does not come back.
    await swapIn('billing:0123456789abcdef-billing\nreports:0123456789abcdef-reports\nnot an entry\n');
    expect(await creds.reload()).toBe('invalid');
    expect(await creds.reload()).toBe('unchanged');
    expect(creds.authenticate(basic('reports', '0123456789abcdef-reports'))).toBeUndefined();
    expect(creds.authenticate(basic('billing', '0123456789abcdef-billing'))).toBe('billing');

    // Gone: unreadable is no better than broken.
    await rm(join(dir, 'callers'));
    expect(await creds.reload()).toBe('invalid');
    expect(creds.authenticate(basic('billing', '0123456789abcdef-billing'))).toBe('billing');
    expect(results).toEqual([
      'ok:1',
      'invalid:1:service credentials: line 3 is not "service:secret"',
      expect.stringMatching(/^invalid:1:ENOENT/),
    ]);
    creds.close();
  });

  it('will not start from a path that does not parse', async () => {
    await writeFile(join(dir, 'callers'), 'billing:short\n');
    await expect(ReloadingServiceCredentials.start(join(dir, 'callers'), { pollMs: 0 })).rejects.toThrow(/shorter than 16/);
  });
});
