import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export const INSTALL_HINT =
  'install it with `sudo apt-get install etcd-server redis-server` (or `node tools/setup/ensure-system-deps.mjs`)';

const SYSTEM_DIRS = ['/usr/bin', '/usr/sbin', '/usr/local/bin', '/usr/local/sbin'];

/** Absolute path of an executable on PATH or in the usual system directories; undefined when missing. */
export function findBinary(name: string, pathEnv: string = process.env['PATH'] ?? ''): string | undefined {
  const dirs = [...pathEnv.split(delimiter).filter(Boolean), ...SYSTEM_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

export function requireBinary(name: string): string {
  const path = findBinary(name);
  if (!path) throw new Error(`\`${name}\` was not found on PATH or in ${SYSTEM_DIRS.join(', ')}; ${INSTALL_HINT}`);
  return path;
}
