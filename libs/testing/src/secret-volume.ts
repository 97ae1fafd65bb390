// A Kubernetes Secret volume on disk, updated as the kubelet's AtomicWriter does: the new
// files in a fresh `..<timestamp>` directory, then an atomic swap of the `..data` symlink
// the visible names point through. A reader that watches a file (not the directory) misses
// such an update; the reload tests use this to make sure a poll does not.
import { mkdir, readdir, readlink, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Replaces the content of the Secret volume at `dir` (created on first use of an empty directory) with `files`. */
export async function updateSecretVolume(dir: string, files: Record<string, string | Buffer>): Promise<void> {
  const previous = await readlink(join(dir, '..data')).catch(() => undefined);
  const version = `..${Date.now()}_${Math.random().toString(36).slice(2)}`;
  await mkdir(join(dir, version));
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, version, name), content);
  await symlink(version, join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  const visible = (await readdir(dir)).filter((name) => !name.startsWith('.'));
  for (const name of Object.keys(files)) if (!visible.includes(name)) await symlink(join('..data', name), join(dir, name));
  for (const name of visible) if (!(name in files)) await unlink(join(dir, name));
  if (previous) await rm(join(dir, previous), { recursive: true });
}
