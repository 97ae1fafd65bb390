// Who may call whom, and from which side a call is checked: the rule the control
// plane (RBAC callers, outbound routes), authz (Check) and the registry (topology)
// all apply, defined once.

/**
 * Where an ext_authz check runs: `outbound` (A's sidecar asks for A→B), `inbound`
 * (B's sidecar validates), `edge` (Contour, or a public service's sidecar for a
 * request without a mesh token). Carried in the CONTEXT_DIRECTION context extension.
 */
export const CALL_DIRECTIONS = ['outbound', 'inbound', 'edge'] as const;
export type CallDirection = (typeof CALL_DIRECTIONS)[number];

export function isCallDirection(value: unknown): value is CallDirection {
  return (CALL_DIRECTIONS as readonly unknown[]).includes(value);
}

/** A service as far as the call rule cares: its name and what it declared it calls. */
export interface DeclaringService {
  readonly name: string;
  readonly dependencies: ReadonlyArray<{ readonly service: string }>;
}

/** Why a call between two services is refused: a closed set (it labels metrics). */
export const CALL_REFUSALS = ['unknown-source', 'unknown-destination', 'undeclared'] as const;
export type CallDecision = { allowed: true } | { allowed: false; reason: (typeof CALL_REFUSALS)[number] };

/**
 * The one rule: A may call B when both are registered and A declared B as a
 * dependency. `source` undefined means A is not registered.
 */
export function mayCall(
  source: DeclaringService | undefined,
  destination: string,
  isRegistered: (service: string) => boolean,
): CallDecision {
  if (!source) return { allowed: false, reason: 'unknown-source' };
  if (!isRegistered(destination)) return { allowed: false, reason: 'unknown-destination' };
  return source.dependencies.some((dep) => dep.service === destination) ? { allowed: true } : { allowed: false, reason: 'undeclared' };
}

/**
 * Every registered service's admitted callers (the same rule as mayCall, for all
 * pairs at once), each list sorted. Services nobody may call are absent.
 */
export function callersByService(services: Iterable<DeclaringService>): Map<string, string[]> {
  const all = [...services];
  const registered = new Set(all.map((s) => s.name));
  const callers = new Map<string, string[]>();
  for (const source of all) {
    for (const destination of new Set(source.dependencies.map((d) => d.service))) {
      if (!registered.has(destination)) continue;
      let list = callers.get(destination);
      if (!list) callers.set(destination, (list = []));
      list.push(source.name);
    }
  }
  for (const list of callers.values()) list.sort(compareStrings);
  return callers;
}

/** Code-unit order, the order every sorted list in the mesh uses (stable across locales, unlike localeCompare). */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * `array.sort(compare)` (in place, returned) without V8's sort for short lists: its work state (about a
 * kilobyte) is allocated on every call, even for two items, and the hot paths sort many short lists (a
 * type's resources, an object's keys, the names a proxy asks for), most of them already in order. Up to
 * SHORT_SORT items an insertion sort (stable, as Array.prototype.sort is: equal items keep their order)
 * does it in place; an array in order costs one pass.
 */
export function sortInPlace<T>(array: T[], compare: (a: T, b: T) => number): T[] {
  if (array.length > SHORT_SORT) return array.sort(compare);
  for (let i = 1; i < array.length; i++) {
    const item = array[i]!;
    let j = i - 1;
    if (compare(array[j]!, item) <= 0) continue;
    // Shift the strictly greater ones up: an equal item stays before this one.
    do {
      array[j + 1] = array[j]!;
      j--;
    } while (j >= 0 && compare(array[j]!, item) > 0);
    array[j + 1] = item;
  }
  return array;
}

const SHORT_SORT = 16;

/** Sorts anything with a `name` by it: resources, services, endpoints. */
export function byName(a: { readonly name: string }, b: { readonly name: string }): number {
  return compareStrings(a.name, b.name);
}
