// Where signing keys come from: a directory (a mounted Kubernetes Secret, or
// systemd's $CREDENTIALS_DIRECTORY) and/or one PEM in the environment.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { signingKeyFromPem, type SigningKey } from './signing-key';

export interface SigningKeySource {
  dir?: string | undefined;
  /** Only files whose name starts with this (a systemd credentials directory also holds e.g. the etcd client key). */
  namePrefix?: string | undefined;
  /** Files that are never signing keys, e.g. TRELLIS_ETCD_KEY_FILE. */
  exclude?: readonly string[];
  pem?: string | undefined;
}

/** In `$CREDENTIALS_DIRECTORY`, signing keys are the credentials named `signing-key*` (LoadCredential=signing-key.pem:…). */
export const CREDENTIAL_NAME_PREFIX = 'signing-key';

const MAX_KEY_FILE_BYTES = 64 * 1024;

/**
 * Reads every private key the source offers. Files that are not PEM private keys
 * (Secret metadata such as `..data` links, READMEs) are skipped; a file that looks
 * like a key but does not parse is an error, so a broken rotation is noticed.
 */
export async function loadSigningKeys(source: SigningKeySource): Promise<SigningKey[]> {
  const keys: SigningKey[] = [];
  // Environment values often carry a PEM with its line breaks escaped as "\n".
  if (source.pem)
    keys.push(await signingKeyFromPem(source.pem.includes('\n') ? source.pem : source.pem.replace(/\\n/g, '\n'), 'TRELLIS_SIGNING_KEY'));
  if (source.dir) {
    const excluded = new Set((source.exclude ?? []).map((path) => resolve(path)));
    const names = (await readdir(source.dir)).filter((name) => !name.startsWith('.') && name.startsWith(source.namePrefix ?? '')).sort();
    for (const name of names) {
      const path = join(source.dir, name);
      if (excluded.has(resolve(path))) continue;
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
