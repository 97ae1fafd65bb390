import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSigningKeys } from './load-signing-keys';
import { InvalidSigningKeyError } from './signing-key';

const pem = (type: 'rsa' | 'ec', bits = 2048) =>
  (type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: bits })
    : generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  ).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

describe('loadSigningKeys', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'authz-keys-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('reads every PEM private key of a mounted Secret, skipping its metadata, with thumbprint kids', async () => {
    const rsa = pem('rsa');
    await writeFile(join(dir, 'current.pem'), rsa);
    await writeFile(join(dir, 'next.pem'), pem('ec'));
    await writeFile(join(dir, 'README'), 'not a key');
    await symlink(join(dir, 'current.pem'), join(dir, '..data'));
    const keys = await loadSigningKeys({ dir, pem: rsa });
    expect(keys.map((k) => [k.source, k.alg]).sort()).toEqual([
      ['current.pem', 'RS256'], // the same key from the env and a file is one key
      ['next.pem', 'ES256'],
    ]);
    for (const key of keys) expect(key.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('in a systemd credentials directory, reads only signing-key* and never the etcd client key', async () => {
    await writeFile(join(dir, 'signing-key.pem'), pem('rsa'));
    await writeFile(join(dir, 'signing-key-next.pem'), pem('ec'));
    await writeFile(join(dir, 'etcd-client-key.pem'), pem('rsa'));
    const keys = await loadSigningKeys({ dir, namePrefix: 'signing-key', exclude: [join(dir, 'signing-key-next.pem')] });
    expect(keys.map((k) => k.source)).toEqual(['signing-key.pem']);
  });

  it('reads a PEM from the environment whose line breaks are escaped', async () => {
    const escaped = pem('ec').trim().replace(/\n/g, '\\n');
    expect(escaped).not.toContain('\n');
    const [key] = await loadSigningKeys({ pem: escaped });
    expect(key?.alg).toBe('ES256');
  });

  it('refuses weak or unreadable keys without quoting them', async () => {
    await writeFile(join(dir, 'weak.pem'), pem('rsa', 1024));
    await expect(loadSigningKeys({ dir })).rejects.toThrow(new InvalidSigningKeyError('weak.pem', 'RSA keys must have at least 2048 bits'));
    await rm(join(dir, 'weak.pem'));
    const smallExponent = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).privateKey;
    await writeFile(join(dir, 'e3.pem'), smallExponent.export({ type: 'pkcs8', format: 'pem' }) as string);
    await expect(loadSigningKeys({ dir })).rejects.toThrow(
      new InvalidSigningKeyError('e3.pem', 'RSA keys must have the public exponent 65537'),
    );
    const broken = '-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ1dC1icm9rZW4=\n-----END PRIVATE KEY-----\n';
    const error = await loadSigningKeys({ pem: broken }).catch((err: Error) => err);
    expect(error).toBeInstanceOf(InvalidSigningKeyError);
    expect((error as Error).message).not.toContain('c2VjcmV0');
  });
});
