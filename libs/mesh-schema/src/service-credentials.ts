// Per-service credentials for callers outside Envoy: one secret per service, from
// a file of `service:secret` lines or a directory of files named by service (a
// mounted Secret). authz takes them on `POST /v1/token`, the registry for an
// instance agent's writes to its own service's instances. Only SHA-256 digests
// are kept in memory and compared in constant time.
import { matchesSecretDigest, secretDigest } from '@trellis/mesh-contracts';
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
    const info = await stat(path);
    const entries: [string, string][] = [];
    if (info.isDirectory()) {
      for (const name of (await readdir(path)).filter((n) => !n.startsWith('.')).sort()) {
        const file = join(path, name);
        if ((await stat(file)).isFile()) entries.push([name, (await readFile(file, 'utf8')).trim()]);
      }
    } else {
      const lines = (await readFile(path, 'utf8')).split('\n');
      lines.forEach((raw, index) => {
        const line = raw.trim();
        if (!line || line.startsWith('#')) return;
        const colon = line.indexOf(':');
        if (colon <= 0) throw new Error(`service credentials: line ${index + 1} is not "service:secret"`);
        entries.push([line.slice(0, colon), line.slice(colon + 1)]);
      });
    }
    return ServiceCredentials.fromEntries(entries);
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
