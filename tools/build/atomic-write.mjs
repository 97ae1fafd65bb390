// Build outputs replace the old ones whole: each file is written to a temporary file in
// its own directory, flushed, then renamed over the old one (a rename within a file system
// is atomic). A process that starts meanwhile (a systemd restart, a running `npm start`,
// another suite's worker thread) opens the old file or the new one, never half of one,
// and one that already has the old file open keeps reading the old file.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Writes every file atomically, each temporary file first and then the renames, so a failure
 * while writing leaves all the old outputs in place. Source maps are renamed before the code
 * that points at them, so new code does not meet an old map.
 * @param {{ path: string; contents: string | Uint8Array }[]} files
 */
export function writeFilesAtomically(files) {
  const staged = [];
  try {
    for (const { path, contents } of files) {
      mkdirSync(dirname(path), { recursive: true });
      const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${staged.length}.tmp`);
      staged.push({ path, temp });
      writeFileSync(temp, contents, { flush: true });
    }
  } catch (error) {
    for (const { temp } of staged) rmSync(temp, { force: true });
    throw error;
  }
  const mapsFirst = [...staged.filter((f) => f.path.endsWith('.map')), ...staged.filter((f) => !f.path.endsWith('.map'))];
  for (const { path, temp } of mapsFirst) renameSync(temp, path);
}

/** One file, written atomically (see writeFilesAtomically). */
export function writeFileAtomically(path, contents) {
  writeFilesAtomically([{ path, contents }]);
}
