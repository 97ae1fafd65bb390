import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSecretFile, ReloadingSecretFile, type SecretReloadResult } from './secret-file';

describe('parseSecretFile', () => {
  it('takes the secret without its trailing newline', () => {
    expect(parseSecretFile('0123456789abcdef\n', 16)).toBe('0123456789abcdef');
  });
  it.each([
    ['', 'the file is empty'],
    ['\n  \n', 'the file is empty'],
    ['short\n', 'at least 16 characters'],
    ['0123456789abcdef\n0123456789abcdef\n', 'whitespace'],
  ])('refuses %j', (content, message) => {
    expect(() => parseSecretFile(content, 16)).toThrow(message);
  });
});

describe('ReloadingSecretFile', () => {
  let dir: string;
  let path: string;
  const seen: [SecretReloadResult, string | undefined][] = [];
  let file: ReloadingSecretFile | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'secret-file-'));
    path = join(dir, 'secret');
    seen.length = 0;
  });
  afterEach(async () => {
    file?.close();
    await rm(dir, { recursive: true, force: true });
  });
  // An hour's poll: only reload() reads the file in these tests.
  const start = () => ReloadingSecretFile.start(path, { minLength: 16, pollMs: 3_600_000, onReload: (r, e) => seen.push([r, e?.message]) });

  it('refuses to start on a missing or broken file', async () => {
    await expect(start()).rejects.toThrow('ENOENT');
    await writeFile(path, '\n');
    await expect(start()).rejects.toThrow('the file is empty');
  });

  it('optional: starts without a secret while the file is absent from its directory, and takes it when it appears', async () => {
    const startOptional = (at: string) =>
      ReloadingSecretFile.start(at, { minLength: 16, pollMs: 3_600_000, optional: true, onReload: (r, e) => seen.push([r, e?.message]) });
    // A wrong directory is still a wrong path.
    await expect(startOptional(join(dir, 'no-such-dir', 'secret'))).rejects.toThrow('ENOENT');
    // Present but broken is still broken.
    await writeFile(path, 'short\n');
    await expect(startOptional(path)).rejects.toThrow('at least 16 characters');
    await unlink(path);

    file = await startOptional(path);
    expect(file.current).toBeUndefined();
    await file.reload();
    expect(seen).toEqual([]); // still absent: nothing to report
    await writeFile(path, 'short\n');
    await file.reload();
    expect(file.current).toBeUndefined(); // never a broken secret
    await writeFile(path, 'arrived-secret-0123456789\n');
    await file.reload();
    expect(file.current).toBe('arrived-secret-0123456789');
    // Once there, a deletion keeps the last good one, as without `optional`.
    await unlink(path);
    await file.reload();
    expect(file.current).toBe('arrived-secret-0123456789');
    expect(seen.map(([result]) => result)).toEqual(['invalid', 'ok', 'invalid']);
  });

  it('applies a new secret; keeps the last good one on an empty, short or deleted file, reporting each once', async () => {
    await writeFile(path, 'first-secret-0123456789\n');
    file = await start();
    expect(file.current).toBe('first-secret-0123456789');

    await file.reload();
    expect(seen).toEqual([]); // the same content: nothing

    await writeFile(path, 'second-secret-0123456789\n');
    await file.reload();
    expect(file.current).toBe('second-secret-0123456789');

    await writeFile(path, '');
    await file.reload();
    await file.reload();
    await writeFile(path, 'short');
    await file.reload();
    await unlink(path);
    await file.reload();
    expect(file.current).toBe('second-secret-0123456789');

    await writeFile(path, 'second-secret-0123456789\n');
    await file.reload();
    expect(seen.map(([result]) => result)).toEqual(['ok', 'invalid', 'invalid', 'invalid', 'ok']);
    expect(seen[3]![1]).toContain('ENOENT');
  });
});
