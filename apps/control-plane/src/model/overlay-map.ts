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
      if (base.depth >= MAX_DEPTH || base.edits.size * 4 > base.count) return new Map(base);
      return new OverlayMap(base, base.depth + 1);
    }
    return base.size === 0 ? new Map() : new OverlayMap(base, 1);
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
