// One secret read from a file (a mounted Secret key, or a root-only file under systemd) and followed without a
// restart, so that rotating the admin token or the CSRF secret takes a file update, not a rollout. Polled, as
// ReloadingServiceCredentials is: Kubernetes swaps a Secret volume's `..data` symlink, which fs.watch misses.
import { readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

export type SecretReloadResult = 'ok' | 'invalid';

export interface SecretFileOptions {
  minLength: number;
  pollMs: number;
  /** Each new content of the file (or a new read error), once: applied (ok) or refused keeping the last good value. */
  onReload?: (result: SecretReloadResult, error?: Error) => void;
  /**
   * A file absent at start is no secret yet rather than an error, while its directory exists: a mounted
   * Secret leaves out a key it does not hold, so an optional key is an absent file. Followed until it
   * appears. A directory that does not exist (a wrong path) still refuses the start.
   */
  optional?: boolean;
}

/** The secret in a file's content: trailing whitespace (the editor's newline) removed; empty, short or multi-line refused. */
export function parseSecretFile(content: string, minLength: number): string {
  const secret = content.trim();
  if (secret === '') throw new Error('the file is empty');
  if (/\s/.test(secret)) throw new Error('the secret contains whitespace (more than one line?)');
  if (secret.length < minLength) throw new Error(`the secret must be at least ${minLength} characters`);
  return secret;
}

export class ReloadingSecretFile {
  private readonly timer: NodeJS.Timeout;

  private constructor(
    readonly path: string,
    private readonly options: SecretFileOptions,
    private secret: string | undefined,
    /** The last content (or read error) seen: the same again does nothing, so each change is logged and counted once. */
    private lastSeen: string | undefined,
  ) {
    this.timer = setInterval(() => void this.reload(), options.pollMs).unref();
  }

  /** Reads `path`; a missing (unless `optional`), empty or short secret at start is an error (the caller refuses to start). */
  static async start(path: string, options: SecretFileOptions): Promise<ReloadingSecretFile> {
    let content: string;
    try {
      content = await readFile(path, 'utf8');
    } catch (err) {
      if (
        options.optional &&
        isMissing(err) &&
        (await stat(dirname(path)).then(
          (s) => s.isDirectory(),
          () => false,
        ))
      )
        return new ReloadingSecretFile(path, options, undefined, undefined);
      throw err;
    }
    return new ReloadingSecretFile(path, options, parseSecretFile(content, options.minLength), content);
  }

  /**
   * The last good secret: a broken or emptied file never replaces it (never an empty token: fail closed).
   * Undefined only while an `optional` file absent at start has not yet appeared with a good one.
   */
  get current(): string | undefined {
    return this.secret;
  }

  /** Reads the file now (the poll, and SIGHUP). */
  async reload(): Promise<void> {
    let content: string;
    try {
      content = await readFile(this.path, 'utf8');
    } catch (err) {
      // An optional file that has never been there is not there yet: nothing to report.
      if (this.lastSeen === undefined && isMissing(err)) return;
      return this.refuse(`unreadable: ${(err as Error).message}`, err as Error);
    }
    if (content === this.lastSeen) return;
    let secret: string;
    try {
      secret = parseSecretFile(content, this.options.minLength);
    } catch (err) {
      return this.refuse(content, err as Error);
    }
    this.lastSeen = content;
    this.secret = secret;
    this.options.onReload?.('ok');
  }

  close(): void {
    clearInterval(this.timer);
  }

  private refuse(seen: string, error: Error): void {
    if (seen === this.lastSeen) return;
    this.lastSeen = seen;
    this.options.onReload?.('invalid', error);
  }
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}
