// What keeps a test process alive, counted by kind, to check that a failed start closed
// everything it had opened (servers, sockets, ref'd timers).
import { eventually } from './eventually';

export type ActiveResources = ReadonlyMap<string, number>;

/** This process's active resources by kind (process.getActiveResourcesInfo). */
export function activeResources(): ActiveResources {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo()) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

/** Kinds with more active now than in `before`, and how many more. */
export function resourcesAddedSince(before: ActiveResources): Record<string, number> {
  const added: Record<string, number> = {};
  for (const [kind, count] of activeResources()) if (count > (before.get(kind) ?? 0)) added[kind] = count - (before.get(kind) ?? 0);
  return added;
}

/**
 * Waits until nothing is active beyond `before`; rejects naming what is still open. Closing takes
 * a few turns (a watch's cancel, a lease's revoke): a correctness wait, not a timing.
 */
export async function nothingLeftOpenSince(before: ActiveResources, what: string, timeoutMs = 30_000): Promise<void> {
  await eventually(what, () => Object.keys(resourcesAddedSince(before)).length === 0 || undefined, timeoutMs).catch((err: Error) => {
    throw new Error(`${err.message}; still open: ${JSON.stringify(resourcesAddedSince(before))}`);
  });
}
