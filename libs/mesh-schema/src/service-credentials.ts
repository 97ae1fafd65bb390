// Per-service credentials for callers outside Envoy: one secret per service, from
// a file of `service:secret` lines or a directory of files named by service (a
// mounted Secret). authz takes them on `POST /v1/token`, the registry for an
// instance agent's writes to its own service's instances. Only SHA-256 digests
// are kept in memory and compared in constant time.
import { matchesSecretDigest, secretDigest } from '@trellis/mesh-contracts';
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DNS_LABEL } from '@trellis/mesh-contracts';

const MIN_SECRET_LENGTH = 16;

export class ServiceCredentials {
  private constructor(private readonly digests: ReadonlyMap<string, Buffer>) {}

  static fromEntries(entries: Iterable<[service: string, secret: string]>): ServiceCredentials {
    const digests = new Map<string, Buffer>();
    for (const [service, secret] of entries) {
      if (!DNS_LABEL.test(service)) throw new Error(`service credentials: "${service}" is not a service name`);
      if (secret.length < MIN_SECRET_LENGTH)
        throw new Error(`service credentials: the secret of ${service} is shorter than ${MIN_SECRET_LENGTH} characters`);
      digests.set(service, secretDigest(secret));
    }
    return new ServiceCredentials(digests);
  }

  static async load(path: string): Promise<ServiceCredentials> {
    return parseCredentialsSource(await readCredentialsSource(path));
  }

  get size(): number {
    return this.digests.size;
  }

  /** The authenticated service for a `Basic base64(service:secret)` header, or undefined. */
  authenticate(authorization: string | undefined): string | undefined {
    const match = authorization?.match(/^Basic +([A-Za-z0-9+/=]+)$/i);
    if (!match) return undefined;
    const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return undefined;
    const service = decoded.slice(0, colon);
    const expected = this.digests.get(service);
    // Compare against something even for unknown services, so timing does not reveal which exist.
    const ok = matchesSecretDigest(decoded.slice(colon + 1), expected ?? secretDigest(''));
    return ok && expected ? service : undefined;
  }
}

/** What a credentials path holds, read whole before anything is parsed. */
type CredentialsSource = { kind: 'file'; text: string } | { kind: 'directory'; files: [name: string, text: string][] };

/** The credentials a source holds; throws on the first entry that is not one, so a set is never taken in part. */
function parseCredentialsSource(source: CredentialsSource): ServiceCredentials {
  const entries: [string, string][] = [];
  if (source.kind === 'directory') {
    for (const [name, text] of source.files) entries.push([name, text.trim()]);
  } else {
    source.text.split('\n').forEach((raw, index) => {
      const line = raw.trim();
      if (!line || line.startsWith('#')) return;
      const colon = line.indexOf(':');
      if (colon <= 0) throw new Error(`service credentials: line ${index + 1} is not "service:secret"`);
      entries.push([line.slice(0, colon), line.slice(colon + 1)]);
    });
  }
  return ServiceCredentials.fromEntries(entries);
}

async function readCredentialsSource(path: string): Promise<CredentialsSource> {
  const info = await stat(path);
  if (!info.isDirectory()) return { kind: 'file', text: await readFile(path, 'utf8') };
  const files: [string, string][] = [];
  // Dot names are Kubernetes' own (`..data`, `..2026_…`): the service files are symlinks through them.
  for (const name of (await readdir(path)).filter((n) => !n.startsWith('.')).sort()) {
    const file = join(path, name);
    // Gone between readdir and here, or a symlink left dangling for a moment after a Secret update
    // removed its key: a credential that no longer exists, so it is left out (never guessed in).
    const text = await readIfFile(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (text !== undefined) files.push([name, text]);
  }
  return { kind: 'directory', files };
}

async function readIfFile(file: string): Promise<string | undefined> {
  return (await stat(file)).isFile() ? readFile(file, 'utf8') : undefined;
}

export type CredentialsReloadResult = 'ok' | 'invalid' | 'unchanged';

export interface ReloadingServiceCredentialsOptions {
  /** How often the path is read again, in ms; 0: only on reload() (SIGHUP). */
  pollMs: number;
  /** Each new content of the path, once: applied (ok) or refused with the reason (invalid). */
  onReload?: (result: Exclude<CredentialsReloadResult, 'unchanged'>, detail: { size: number; error?: Error }) => void;
}

/**
 * Service credentials that follow their file or directory without a restart, so a revoked
 * secret stops working within a poll period. The path is read again on an interval rather
 * than watched: Kubernetes updates a Secret volume by swapping its `..data` symlink, which a
 * watch on the file never sees, and a poll works the same on every filesystem.
 *
 * A new content that does not parse (or cannot be read) keeps the last good set, whole: it
 * neither re-enables a credential revoked before nor accepts anything new, and a typo in the
 * Secret does not lock every agent out (their instances would expire from the mesh). The
 * reason is reported once per distinct content through `onReload`.
 */
export class ReloadingServiceCredentials {
  private timer?: NodeJS.Timeout;
  /** What was last read (a content digest, or the read error): a poll that finds the same does nothing. */
  private lastSeen: string;
  private reloading?: Promise<CredentialsReloadResult>;

  private constructor(
    readonly path: string,
    private current: ServiceCredentials,
    lastSeen: string,
    private readonly options: ReloadingServiceCredentialsOptions,
  ) {
    this.lastSeen = lastSeen;
  }

  /** Reads the path once (its errors throw: a process must not start without the credentials it was given), then polls. */
  static async start(path: string, options: ReloadingServiceCredentialsOptions): Promise<ReloadingServiceCredentials> {
    const source = await readCredentialsSource(path);
    const credentials = new ReloadingServiceCredentials(path, parseCredentialsSource(source), digestOf(source), options);
    if (options.pollMs > 0) {
      credentials.timer = setInterval(() => void credentials.reload(), options.pollMs);
      credentials.timer.unref();
    }
    return credentials;
  }

  get size(): number {
    return this.current.size;
  }

  authenticate(authorization: string | undefined): string | undefined {
    return this.current.authenticate(authorization);
  }

  /** Reads the path again now (the poll, SIGHUP); concurrent calls share one read. */
  reload(): Promise<CredentialsReloadResult> {
    this.reloading ??= this.readAgain().finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async readAgain(): Promise<CredentialsReloadResult> {
    let source: CredentialsSource;
    try {
      source = await readCredentialsSource(this.path);
    } catch (err) {
      return this.refuse(`read: ${(err as Error).message}`, err as Error);
    }
    const seen = digestOf(source);
    if (seen === this.lastSeen) return 'unchanged';
    let next: ServiceCredentials;
    try {
      next = parseCredentialsSource(source);
    } catch (err) {
      return this.refuse(seen, err as Error);
    }
    this.lastSeen = seen;
    this.current = next;
    this.options.onReload?.('ok', { size: next.size });
    return 'ok';
  }

  private refuse(seen: string, error: Error): CredentialsReloadResult {
    if (seen === this.lastSeen) return 'unchanged';
    this.lastSeen = seen;
    this.options.onReload?.('invalid', { size: this.current.size, error });
    return 'invalid';
  }
}

function digestOf(source: CredentialsSource): string {
  return createHash('sha256').update(JSON.stringify(source)).digest('hex');
}
