// The in-process token cache's storage: entries by (source, destination, kid),
// at most `maxEntries`, the least recently stored going first. Lookups walk
// nested maps by the three strings as they are — no key string is built on a
// Check — so the strings' cached hashes are reused (the Check's names are
// interned by the wire reader, the kid is the signing key's own string).
export class PairTokenMemory<T> {
  /** source → destination → kid → entry. */
  private readonly byPair = new Map<string, Map<string, Map<string, T>>>();
  /** Every entry's parts, oldest stored first (a Map keeps insertion order). */
  private readonly order = new Map<string, readonly [source: string, destination: string, kid: string]>();

  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.order.size;
  }

  get(source: string, destination: string, kid: string): T | undefined {
    return this.byPair.get(source)?.get(destination)?.get(kid);
  }

  /** Stores (or replaces, as the newest) the entry; drops the oldest beyond the bound. */
  set(source: string, destination: string, kid: string, value: T): void {
    const key = JSON.stringify([source, destination, kid]);
    this.order.delete(key);
    this.order.set(key, [source, destination, kid]);
    let byDestination = this.byPair.get(source);
    if (!byDestination) this.byPair.set(source, (byDestination = new Map()));
    let byKid = byDestination.get(destination);
    if (!byKid) byDestination.set(destination, (byKid = new Map()));
    byKid.set(kid, value);
    if (this.order.size > this.maxEntries) {
      const [oldestKey, oldest] = this.order.entries().next().value!;
      this.order.delete(oldestKey);
      this.remove(...oldest);
    }
  }

  private remove(source: string, destination: string, kid: string): void {
    const byDestination = this.byPair.get(source);
    const byKid = byDestination?.get(destination);
    if (!byDestination || !byKid) return;
    byKid.delete(kid);
    if (byKid.size > 0) return;
    byDestination.delete(destination);
    if (byDestination.size === 0) this.byPair.delete(source);
  }
}
