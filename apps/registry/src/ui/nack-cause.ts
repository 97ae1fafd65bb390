// Which change a proxy's rejected config came from. A proxy's config is built
// from its own service and the services it calls, so the candidates are the
// history of all of them.
import type { HistoryEntry, ProxyStatus, Versioned } from '@trellis/mesh-schema';

export type LastNack = NonNullable<NonNullable<ProxyStatus['types']['lds']>['lastNack']>;

export type NackCause =
  /** Exact: the newest change in the mesh revision the rejected config was built from. */
  | { basis: 'revision'; change: HistoryEntry; meshRevision: string }
  /** A guess for records written before NACKs carried a revision: the newest change made before the rejection. */
  | { basis: 'time'; change: HistoryEntry };

/**
 * A history entry commits in the same etcd txn as its change, so its modRevision is
 * that change's mesh revision: the newest one at or below the rejected config's
 * revision is the last change that config included.
 */
export function findNackCause(changes: readonly Versioned<HistoryEntry>[], nack: LastNack): NackCause | undefined {
  if (nack.meshRevision !== undefined) {
    const built = BigInt(nack.meshRevision);
    let newest: Versioned<HistoryEntry> | undefined;
    for (const c of changes) {
      const revision = BigInt(c.modRevision);
      if (revision <= built && (!newest || revision > BigInt(newest.modRevision))) newest = c;
    }
    return newest && { basis: 'revision', change: newest.value, meshRevision: nack.meshRevision };
  }
  let newest: HistoryEntry | undefined;
  for (const { value } of changes) if (value.at <= nack.at && (!newest || value.at > newest.at)) newest = value;
  return newest && { basis: 'time', change: newest };
}
