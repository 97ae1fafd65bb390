// A map made from another by a few edits without copying it, so that one change to a
// 10,000-service mesh does not copy the model's 10,000-entry maps (records, memo,
// services) to edit one entry of each. Reads look at the edits, then at the base (the
// previous model's map, never changed). It reads and iterates exactly as a copy of the
// base edited the same way would: the base's order, an edited key in its place, a new
// key — or one deleted and set again — at the end, in the order set.

const DELETED = Symbol('deleted');
/** An edit whose value is `undefined`: so a read needs one lookup per map to tell an edit from none. */
const UNDEFINED = Symbol('undefined');
type Edit<V> = V | typeof DELETED | typeof UNDEFINED;

/** Chains longer than this are copied flat once, so a read looks at a few maps at most. */
const MAX_DEPTH = 8;

export class OverlayMap<K, V> implements ReadonlyMap<K, V> {
  private readonly edits = new Map<K, Edit<V>>();
  /** Keys iterated after the base's, in the order they were set (a Set keeps insertion order). */
  private readonly appended = new Set<K>();
  private count: number;

  private constructor(
    private readonly base: ReadonlyMap<K, V>,
    readonly depth: number,
  ) {
    this.count = base.size;
  }

  /**
   * An editable map holding what `base` holds: an overlay over it, or a plain copy when
   * `base` is already the top of a long chain or mostly edits (amortised: a copy every
   * few builds, not one per build). The caller edits it only while building.
   */
  static over<K, V>(base: ReadonlyMap<K, V>): Map<K, V> | OverlayMap<K, V> {
    if (base instanceof OverlayMap) {
      if (base.depth >= MAX_DEPTH || base.edits.size * 4 > base.count) return base.flat();
      return new OverlayMap(base, base.depth + 1);
    }
    return base.size === 0 ? new Map() : new OverlayMap(base, 1);
  }

  /**
   * A plain copy reading and iterating as this map does: the map at the bottom of the chain copied once, then each
   * overlay's edits replayed on it from the bottom up (a copy through the chain's iterators would pass every key
   * through every overlay's generator: at 1,000 services and a depth of 8, milliseconds in the change that lays it).
   */
  private flat(): Map<K, V> {
    const chain: OverlayMap<K, V>[] = [this];
    let map = this.base;
    while (map instanceof OverlayMap) {
      chain.push(map as OverlayMap<K, V>);
      map = (map as OverlayMap<K, V>).base;
    }
    const flat = new Map(map);
    for (let i = chain.length - 1; i >= 0; i--) chain[i]!.replay(flat);
    return flat;
  }

  /** This overlay's edits applied to a copy of its base: edited keys in their place, appended keys at the end in order. */
  private replay(flat: Map<K, V>): void {
    this.edits.forEach((edit, key) => {
      if (this.appended.has(key)) return;
      if (edit === DELETED) flat.delete(key);
      else flat.set(key, valueOf(edit));
    });
    for (const key of this.appended) {
      // A key deleted and set again moves to the end, as iterating the overlay has it.
      flat.delete(key);
      flat.set(key, valueOf(this.edits.get(key)!));
    }
  }

  get size(): number {
    return this.count;
  }

  // Reads walk the chain in a loop (one lookup per overlay) rather than recursing through each base's get: the
  // model's service map is read for every affected identity and its dependencies on every change.
  get(key: K): V | undefined {
    const edited = this.edits.get(key);
    if (edited !== undefined) return edited === DELETED || edited === UNDEFINED ? undefined : edited;
    let map = this.base;
    while (map instanceof OverlayMap) {
      const edited = (map as OverlayMap<K, V>).edits.get(key);
      if (edited !== undefined) return edited === DELETED || edited === UNDEFINED ? undefined : edited;
      map = (map as OverlayMap<K, V>).base;
    }
    return map.get(key);
  }

  has(key: K): boolean {
    const edited = this.edits.get(key);
    if (edited !== undefined) return edited !== DELETED;
    let map = this.base;
    while (map instanceof OverlayMap) {
      const edited = (map as OverlayMap<K, V>).edits.get(key);
      if (edited !== undefined) return edited !== DELETED;
      map = (map as OverlayMap<K, V>).base;
    }
    return map.has(key);
  }

  /** Building only. */
  set(key: K, value: V): this {
    if (!this.has(key)) {
      this.appended.add(key);
      this.count++;
    }
    this.edits.set(key, value === undefined ? UNDEFINED : value);
    return this;
  }

  /** Building only. */
  delete(key: K): boolean {
    if (!this.has(key)) return false;
    this.edits.set(key, DELETED);
    this.appended.delete(key);
    this.count--;
    return true;
  }

  *entries(): MapIterator<[K, V]> {
    for (const [key, value] of this.base) {
      if (this.appended.has(key)) continue;
      const edited = this.edits.get(key);
      if (edited === undefined) yield [key, value];
      else if (edited !== DELETED) yield [key, valueOf(edited)];
    }
    for (const key of this.appended) yield [key, valueOf(this.edits.get(key)!)];
  }

  *keys(): MapIterator<K> {
    for (const [key] of this.entries()) yield key;
  }

  *values(): MapIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  forEach(callback: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    for (const [key, value] of this.entries()) callback.call(thisArg, value, key, this);
  }
}

function valueOf<V>(edit: Edit<V>): V {
  return (edit === UNDEFINED ? undefined : edit) as V;
}
