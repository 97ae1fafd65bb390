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
 * Waits until nothing is active beyond `before`, looks again `settleMs` later and waits for that too;
 * rejects naming what is still open. Closing takes a few turns (a watch's cancel, a lease's revoke), and
 * a start that failed may open something a moment later (a retry timer, a reconnect) which one clean look
 * would miss; the second look finds it if it stays. It is a wait, not a timing: the test process's own
 * short-lived timers come and go, so a look that meets one simply looks again.
 */
export async function nothingLeftOpenSince(before: ActiveResources, what: string, timeoutMs = 30_000, settleMs = 1_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const nothingAdded = () => Object.keys(resourcesAddedSince(before)).length === 0 || undefined;
  try {
    await eventually(what, nothingAdded, timeoutMs);
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    await eventually(`${what} ${settleMs} ms after nothing was`, nothingAdded, Math.max(deadline - Date.now(), 1_000));
  } catch (err) {
    throw new Error(`${(err as Error).message}; still open: ${JSON.stringify(resourcesAddedSince(before))}`);
  }
}
