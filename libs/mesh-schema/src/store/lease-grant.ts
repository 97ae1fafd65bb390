// A lease grant that can be retried into its own write. etcd3 retries a call that failed recoverably (a dropped
// connection, no answer in time); a grant etcd applied whose answer was lost would then grant a second lease and leave
// the first to idle out its TTL, unseen. With the ID chosen here, the retry meets "lease already exists" instead:
// the lease the first attempt granted, which is this call's.
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';

/** 62 random bits: a lease ID etcd accepts (a positive int64) that no other grant picks but by a chance of ~2^-62 per lease held. */
export function randomLeaseId(): string {
  for (;;) {
    const id = randomBytes(8).readBigUInt64BE() >> 2n;
    if (id !== 0n) return id.toString(); // 0 asks etcd to choose
  }
}

/** Grants a lease of `ttlSeconds` under an ID of our choosing; resolves with that ID. */
export async function grantLease(client: Etcd3, ttlSeconds: number): Promise<string> {
  const id = randomLeaseId();
  try {
    await client.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: id });
  } catch (err) {
    // An earlier attempt of this very grant, applied by etcd with its answer lost.
    if (!/lease already exists/i.test((err as Error).message)) throw err;
  }
  return id;
}
