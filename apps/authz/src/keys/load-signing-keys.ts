// Where signing keys come from: a directory (a mounted Kubernetes Secret, or
// systemd's $CREDENTIALS_DIRECTORY) and/or one PEM in the environment.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { signingKeyFromPem, type SigningKey } from './signing-key';

export interface SigningKeySource {
  dir?: string | undefined;
  pem?: string | undefined;
}

const MAX_KEY_FILE_BYTES = 64 * 1024;

/**
 * Reads every private key the source offers. Files that are not PEM private keys
 * (Secret metadata such as `..data` links, READMEs) are skipped; a file that looks
 * like a key but does not parse is an error, so a broken rotation is noticed.
 */
export async function loadSigningKeys(source: SigningKeySource): Promise<SigningKey[]> {
  const keys: SigningKey[] = [];
  if (source.pem) keys.push(await signingKeyFromPem(source.pem, 'TRELLIS_SIGNING_KEY'));
  if (source.dir) {
    const names = (await readdir(source.dir)).filter((name) => !name.startsWith('.')).sort();
    for (const name of names) {
      const path = join(source.dir, name);
      const info = await stat(path);
      if (!info.isFile() || info.size > MAX_KEY_FILE_BYTES) continue;
      const text = await readFile(path, 'utf8');
      if (!/-----BEGIN (RSA |EC )?PRIVATE KEY-----/.test(text)) continue;
      keys.push(await signingKeyFromPem(text, name));
    }
  }
  // The same key mounted twice is one key.
  return [...new Map(keys.map((key) => [key.kid, key])).values()];
}
