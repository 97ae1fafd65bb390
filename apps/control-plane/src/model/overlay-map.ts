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
  /** This overlay's edits over `base` (a bottom's stay empty: it is built by editing `bottom` itself). */
  private readonly edits = new Map<K, Edit<V>>();
  /** Keys iterated after the base's, in the order they were set (a Set keeps insertion order). */
  private readonly appended = new Set<K>();
  /**
   * The edits of every overlay from this one down, newest first, then `bottom` (a bottom's list is itself alone).
   * Reads look in each: one loop that runs at every depth, so what V8 learnt and optimised while reading the start-up
   * model (all bottoms) holds for the first change's overlays. An empty list at the bottom was another array kind to
   * V8 than an overlay's and left the loop's body unrun: the first change deoptimised every read optimised before it.
   */
  private readonly layers: readonly Map<K, Edit<V>>[];
  /** The plain map at the bottom of the chain, only ever edited while its own model is built. */
  private readonly bottom: Map<K, V>;
  private count: number;

  private constructor(
    /** The map this one was laid over; undefined for a bottom. */
    private readonly base: OverlayMap<K, V> | undefined,
    bottom: Map<K, V>,
    readonly depth: number,
  ) {
    this.bottom = bottom;
    this.layers = base ? [this.edits, ...base.layers] : [bottom];
    this.count = base ? base.count : bottom.size;
  }

  /**
   * A map holding these entries, in their order, at the bottom of a chain (depth 0): what a build from scratch and a
   * sort make, so every model's maps are of this one class, whatever the build they came from.
   */
  static of<K, V>(entries?: Iterable<readonly [K, V]>): OverlayMap<K, V> {
    return new OverlayMap<K, V>(undefined, new Map(entries), 0);
  }

  /**
   * An editable map holding what `base` holds: an overlay over it, or a plain copy at the bottom of a new chain when
   * `base` is empty, a plain map, the top of a long chain or mostly edits (amortised: a copy every few builds, not one
   * per build). The caller edits it only while building.
   */
  static over<K, V>(base: ReadonlyMap<K, V>): OverlayMap<K, V> {
    if (!(base instanceof OverlayMap)) return OverlayMap.of(base);
    const overlay = base as OverlayMap<K, V>;
    if (overlay.count === 0) return OverlayMap.of();
    if (overlay.depth >= MAX_DEPTH || overlay.edits.size * 4 > overlay.count) return overlay.flat();
    return new OverlayMap(overlay, overlay.bottom, overlay.depth + 1);
  }

  /**
   * A copy at the bottom of a new chain, reading and iterating as this map does: the plain map at the bottom copied
   * once, then each overlay's edits replayed on it from the bottom up (a copy through the chain's iterators would pass
   * every key through every overlay's generator: at 1,000 services and a depth of 8, milliseconds in the change that
   * lays it).
   */
  private flat(): OverlayMap<K, V> {
    const chain: OverlayMap<K, V>[] = [this];
    for (let map = this.base; map?.base !== undefined; map = map.base) chain.push(map);
    const flat = new Map(this.bottom);
    for (let i = chain.length - 1; i >= 0; i--) chain[i]!.replay(flat);
    return new OverlayMap<K, V>(undefined, flat, 0);
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

  // One lookup per overlay, then the bottom: the model's service map is read for every affected identity and its
  // dependencies on every change.
  get(key: K): V | undefined {
    const layers = this.layers;
    for (let i = 0; i < layers.length; i++) {
      const edited = layers[i]!.get(key);
      if (edited !== undefined) return edited === DELETED || edited === UNDEFINED ? undefined : edited;
    }
    return undefined;
  }

  has(key: K): boolean {
    const layers = this.layers;
    for (let i = 0; i < layers.length; i++) {
      const edited = layers[i]!.get(key);
      if (edited !== undefined) return edited !== DELETED;
    }
    // Not edited, not in the bottom, or in the bottom with the value `undefined`.
    return this.bottom.has(key);
  }

  /** Building only. */
  set(key: K, value: V): this {
    if (this.base === undefined) {
      this.bottom.set(key, value);
      this.count = this.bottom.size;
      return this;
    }
    if (!this.has(key)) {
      this.appended.add(key);
      this.count++;
    }
    this.edits.set(key, value === undefined ? UNDEFINED : value);
    return this;
  }

  /** Building only. */
  delete(key: K): boolean {
    if (this.base === undefined) {
      const deleted = this.bottom.delete(key);
      this.count = this.bottom.size;
      return deleted;
    }
    if (!this.has(key)) return false;
    this.edits.set(key, DELETED);
    this.appended.delete(key);
    this.count--;
    return true;
  }

  *entries(): MapIterator<[K, V]> {
    if (this.base === undefined) {
      yield* this.bottom;
      return;
    }
    // The base's entries straight from its plain map when it is the bottom: no generator in between.
    const below: Iterable<[K, V]> = this.base.base === undefined ? this.bottom : this.base;
    for (const [key, value] of below) {
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
