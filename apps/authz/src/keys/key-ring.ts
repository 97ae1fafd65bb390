// The key ring: the private keys this replica holds, the public keys published
// in etcd (shared by every replica), and which key signs right now.
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { AuthzPublicKey, PublicJwk } from '@trellis/mesh-schema';
import type { Logger } from '@trellis/runtime';
import type { AuthzMetrics } from '../metrics';
import { isRetired, keyState, planKeySchedule, selectSigner, type KeyScheduleOptions } from './key-schedule';
import type { SigningAlg, SigningKey } from './signing-key';

/** The part of MeshStore the key ring writes through. */
export interface AuthzKeyStore {
  listAuthzKeys(): Promise<AuthzPublicKey[]>;
  putAuthzKey(key: AuthzPublicKey): Promise<void>;
  deleteAuthzKey(kid: string): Promise<void>;
}

export interface VerificationKey {
  kid: string;
  alg: SigningAlg;
  key: KeyObject;
}

export class KeyRing {
  private local = new Map<string, SigningKey>();
  private published = new Map<string, AuthzPublicKey>();
  private readonly publicKeyCache = new Map<string, VerificationKey>();
  /** Published keys (of other replicas or written by hand) whose JWK is no key: never used, each logged and counted once. */
  private readonly unusable = new Set<string>();
  private lastRun: Promise<void> = Promise.resolve();
  private queuedRun: Promise<void> | undefined;
  // signer() runs on every Check: its answer only changes when the records do or a pending key's activeFrom passes.
  private signerMemo: { key: SigningKey | undefined; until: number } | undefined;

  constructor(
    private readonly store: AuthzKeyStore,
    private readonly options: KeyScheduleOptions,
    private readonly logger: Logger,
    private readonly metrics: AuthzMetrics,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Replaces the local keys (a reload of the key directory) and publishes what is new. */
  async setLocalKeys(keys: readonly SigningKey[]): Promise<void> {
    const before = new Set(this.local.keys());
    this.local = new Map(keys.map((key) => [key.kid, key]));
    this.signerMemo = undefined;
    for (const key of keys)
      if (!before.has(key.kid)) this.logger.info({ kid: key.kid, alg: key.alg, source: key.source }, 'signing key loaded');
    for (const kid of before) if (!this.local.has(kid)) this.logger.info({ kid }, 'signing key removed from the key source');
    await this.reconcile();
  }

  /**
   * Reads the published keys, writes what the schedule says (new keys, retirements,
   * deletions) and only then lets the result be used: a key never signs before
   * etcd holds its public half. Runs never overlap: a call during a run queues
   * one more (shared by every call until it starts), so it sees the latest keys.
   */
  reconcile(): Promise<void> {
    if (this.queuedRun) return this.queuedRun;
    const run = this.lastRun
      .catch(() => undefined)
      .then(() => {
        this.queuedRun = undefined;
        return this.runReconcile();
      });
    this.queuedRun = run;
    this.lastRun = run;
    return run;
  }

  private async runReconcile(): Promise<void> {
    const now = this.clock();
    const published = await this.store.listAuthzKeys();
    const plan = planKeySchedule([...this.local.values()], published, now, this.options);
    const next = new Map(published.map((record) => [record.kid, record]));
    for (const record of plan.puts) {
      try {
        await this.store.putAuthzKey(record);
        next.set(record.kid, record);
        this.logger.info({ kid: record.kid, activeFrom: record.activeFrom, retireAfter: record.retireAfter }, 'public key published');
      } catch (err) {
        this.metrics.keyPublishErrors.inc();
        this.logger.error({ err, kid: record.kid }, 'could not publish public key; it will not sign until it is published');
      }
    }
    for (const kid of plan.deletes) {
      try {
        await this.store.deleteAuthzKey(kid);
        next.delete(kid);
        this.logger.info({ kid }, 'retired public key removed');
      } catch (err) {
        this.logger.warn({ err, kid }, 'could not remove retired public key');
      }
    }
    this.published = next;
    this.signerMemo = undefined;
    for (const kid of this.publicKeyCache.keys()) if (!next.has(kid)) this.publicKeyCache.delete(kid);
    for (const kid of this.unusable) if (!next.has(kid)) this.unusable.delete(kid);
    for (const record of next.values()) this.importPublicKey(record);
    this.updateGauges(now);
    if (!this.signer() && this.local.size > 0) {
      const pending = [...next.values()].filter((r) => this.local.has(r.kid) && keyState(r, now) === 'pending');
      this.logger.error(
        { pendingUntil: pending.map((r) => r.activeFrom) },
        'no signing key is active: outbound checks are denied until one is',
      );
    }
  }

  /** The key that signs now, or undefined (then nothing is minted). */
  signer(): SigningKey | undefined {
    const now = this.clock();
    if (this.signerMemo && now < this.signerMemo.until) return this.signerMemo.key;
    const record = selectSigner(new Set(this.local.keys()), this.published.values(), now);
    const nextActivation = Math.min(...[...this.published.values()].map((r) => Date.parse(r.activeFrom)).filter((t) => t > now));
    this.signerMemo = { key: record ? this.local.get(record.kid) : undefined, until: nextActivation };
    return this.signerMemo.key;
  }

  /** When a pending key becomes the signer (epoch ms), if one is scheduled: readiness may change then. */
  nextActivationAt(): number | undefined {
    const now = this.clock();
    const times = [...this.published.values()].map((r) => Date.parse(r.activeFrom)).filter((t) => t > now);
    return times.length > 0 ? Math.min(...times) : undefined;
  }

  /** Keys tokens may be verified with: every published, usable key not yet retired. */
  verificationKey(kid: string): VerificationKey | undefined {
    const record = this.published.get(kid);
    if (!record || isRetired(record, this.clock())) return undefined;
    return this.importPublicKey(record);
  }

  /** The record's public key, imported once; undefined when its JWK is no key (dropped with a reason). */
  private importPublicKey(record: AuthzPublicKey): VerificationKey | undefined {
    const { kid } = record;
    if (this.unusable.has(kid)) return undefined;
    let cached = this.publicKeyCache.get(kid);
    if (!cached) {
      let key: KeyObject;
      try {
        key = this.local.get(kid)?.publicKey ?? createPublicKey({ key: jwkForImport(record.jwk), format: 'jwk' });
      } catch (err) {
        this.unusable.add(kid);
        this.metrics.recordsDropped.inc({ kind: 'authzKey' });
        this.logger.error({ kid, err: (err as Error).message }, 'published key is not a usable public key; tokens it signed are refused');
        return undefined;
      }
      cached = { kid, alg: record.jwk.alg, key };
      this.publicKeyCache.set(kid, cached);
    }
    return cached;
  }

  /** The JWKS document: pending, active and retiring keys, sorted for stable output. */
  jwks(): { keys: PublicJwk[] } {
    const now = this.clock();
    const keys = [...this.published.values()]
      .filter((record) => !isRetired(record, now) && !this.unusable.has(record.kid))
      .sort((a, b) => a.kid.localeCompare(b.kid))
      .map((record) => record.jwk);
    return { keys };
  }

  get localKeyCount(): number {
    return this.local.size;
  }

  private updateGauges(now: number): void {
    const counts = { pending: 0, active: 0, retiring: 0 };
    for (const record of this.published.values()) if (!isRetired(record, now)) counts[keyState(record, now)] += 1;
    for (const [state, count] of Object.entries(counts)) this.metrics.signingKeys.set({ state }, count);
  }
}

function jwkForImport(jwk: PublicJwk): JsonWebKey {
  return jwk.kty === 'RSA' ? { kty: 'RSA', n: jwk.n, e: jwk.e } : { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
}
