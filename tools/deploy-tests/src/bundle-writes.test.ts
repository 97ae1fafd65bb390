// The bundlers replace their outputs whole (tools/build/atomic-write.mjs): a process that
// starts from dist/ while a build runs (a systemd restart, a running `npm start`) must load
// the previous bundle or the new one, never a half-written file.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WORKSPACE_ROOT } from './workspace';

const ATOMIC_WRITE = join(WORKSPACE_ROOT, 'tools/build/atomic-write.mjs');

describe('bundle outputs are replaced atomically', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'trellis-bundle-writes-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  // Written in place (truncate, then write), a file open in a reader changes under it; replaced by a
  // rename, the reader keeps the whole file it opened. Each output here is open while the rebuild runs.
  it('a rebuild leaves every file a reader already opened whole, and leaves no temporary files', () => {
    const bundle = () =>
      execFileSync(process.execPath, [join(WORKSPACE_ROOT, 'tools/build/bundle.mjs'), 'authz', dir], {
        cwd: WORKSPACE_ROOT,
        stdio: 'pipe',
      });
    bundle();
    const outputs = readdirSync(dir).sort();
    expect(outputs).toEqual(expect.arrayContaining(['main.js', 'main.js.map', 'check.worker.js', 'package.json', 'package-lock.json']));
    const built = new Map(outputs.map((name) => [name, readFileSync(join(dir, name), 'utf8')]));

    // Stand-ins for the previous release's files, each held open as a starting process would.
    const previous = (name: string) => `// the previous build's ${name}\n`;
    for (const name of outputs) writeFileSync(join(dir, name), previous(name));
    const open = outputs.map((name) => ({ name, fd: openSync(join(dir, name), 'r') }));
    try {
      bundle();
      for (const { name, fd } of open)
        expect({ name, seenByReader: readFileSync(fd, 'utf8') }).toEqual({ name, seenByReader: previous(name) });
    } finally {
      for (const { fd } of open) closeSync(fd);
    }
    expect(readdirSync(dir).sort()).toEqual(outputs);
    for (const name of outputs)
      expect({ name, rebuilt: readFileSync(join(dir, name), 'utf8') === built.get(name) }).toEqual({ name, rebuilt: true });
  }, 120_000);

  it('a write that fails part-way leaves every previous output in place and no temporary files', () => {
    writeFileSync(join(dir, 'main.js'), 'previous main.js\n');
    writeFileSync(join(dir, 'not-a-directory'), '');
    const script = `import(${JSON.stringify(ATOMIC_WRITE)}).then(({ writeFilesAtomically }) => writeFilesAtomically([
      { path: ${JSON.stringify(join(dir, 'main.js'))}, contents: 'new main.js' },
      { path: ${JSON.stringify(join(dir, 'not-a-directory', 'main.js.map'))}, contents: '{}' },
    ]))`;
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/ENOTDIR|EEXIST/);
    expect(readFileSync(join(dir, 'main.js'), 'utf8')).toBe('previous main.js\n');
    expect(readdirSync(dir).sort()).toEqual(['main.js', 'not-a-directory']);
  });
});
