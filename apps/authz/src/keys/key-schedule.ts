// The key rotation schedule as pure functions over the published records.
//
// A key is published (etcd → control plane → jwt_authn, and the JWKS) with
// `activeFrom` one lead time in the future, because Envoy's jwt_authn does not
// refetch on an unknown kid: validators must hold a key before any token uses it.
// When a newer key becomes active the older one gets `retireAfter` = successor's
// activeFrom + token lifetime + clock skew, and is deleted after that — by then
// every token it signed has expired.
import type { AuthzPublicKey } from '@trellis/mesh-schema';
import type { SigningKey } from './signing-key';

export interface KeyScheduleOptions {
  publishLeadSeconds: number;
  tokenTtlSeconds: number;
  clockSkewSeconds: number;
}

export interface KeyPlan {
  puts: AuthzPublicKey[];
  deletes: string[];
}

const ms = (iso: string): number => Date.parse(iso);
const iso = (millis: number): string => new Date(millis).toISOString();

export function isRetired(record: AuthzPublicKey, now: number): boolean {
  return record.retireAfter !== undefined && ms(record.retireAfter) <= now;
}

/** What to write to etcd so the published records match the local keys and the clock. */
export function planKeySchedule(
  local: readonly SigningKey[],
  published: readonly AuthzPublicKey[],
  now: number,
  options: KeyScheduleOptions,
): KeyPlan {
  const effective = new Map(published.map((record) => [record.kid, record]));
  const changed = new Map<string, AuthzPublicKey>();
  const live = published.filter((record) => !isRetired(record, now));

  // New local keys: published now, signing after the lead time — at once only when
  // validators hold no key at all yet (first start), since nothing could verify otherwise.
  for (const key of local) {
    if (effective.has(key.kid)) continue;
    const activeFrom = live.length === 0 ? now : now + options.publishLeadSeconds * 1000;
    const record: AuthzPublicKey = { kid: key.kid, jwk: key.publicJwk, publishedAt: iso(now), activeFrom: iso(activeFrom) };
    effective.set(key.kid, record);
    changed.set(key.kid, record);
  }

  // Superseded keys: keep verifying until the last token they could have signed expired.
  const active = [...effective.values()]
    .filter((record) => ms(record.activeFrom) <= now)
    .sort((a, b) => ms(a.activeFrom) - ms(b.activeFrom));
  for (const record of active) {
    if (record.retireAfter !== undefined) continue;
    const successor = active.find((other) => ms(other.activeFrom) > ms(record.activeFrom));
    if (!successor) continue;
    const retireAfter = ms(successor.activeFrom) + (options.tokenTtlSeconds + options.clockSkewSeconds) * 1000;
    const updated = { ...record, retireAfter: iso(retireAfter) };
    effective.set(record.kid, updated);
    changed.set(record.kid, updated);
  }

  const deletes = [...effective.values()].filter((record) => isRetired(record, now)).map((record) => record.kid);
  for (const kid of deletes) changed.delete(kid);
  return { puts: [...changed.values()], deletes: deletes.sort() };
}

/**
 * The key that signs now: a local key that is published, active and not
 * superseded; the most recently activated one wins (ties by kid, so every
 * replica picks the same).
 */
export function selectSigner(localKids: ReadonlySet<string>, published: Iterable<AuthzPublicKey>, now: number): AuthzPublicKey | undefined {
  let best: AuthzPublicKey | undefined;
  for (const record of published) {
    if (!localKids.has(record.kid) || record.retireAfter !== undefined || ms(record.activeFrom) > now) continue;
    if (!best || ms(record.activeFrom) > ms(best.activeFrom) || (record.activeFrom === best.activeFrom && record.kid > best.kid))
      best = record;
  }
  return best;
}

export type KeyState = 'pending' | 'active' | 'retiring';

export function keyState(record: AuthzPublicKey, now: number): KeyState {
  if (ms(record.activeFrom) > now) return 'pending';
  return record.retireAfter === undefined ? 'active' : 'retiring';
}
