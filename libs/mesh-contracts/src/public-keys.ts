// Which public keys Trellis trusts, in one place: every verifier — mesh keys read
// from etcd, the team-token JWKS, Cloudflare Access certs, xDS tokens, the SDK —
// passes its keys through here. An RSA key with e = 1 turns every signature
// check into a no-op (s^1 = s), a short modulus can be factored, an odd curve
// may be weak or unsupported by the validators we configure.
import { createPublicKey, KeyObject, type JsonWebKey } from 'node:crypto';

export const MIN_RSA_MODULUS_BITS = 2048;
export const RSA_PUBLIC_EXPONENT = 65537n;
/** Node's names for P-256 and P-384. */
const ALLOWED_CURVES = new Set(['prime256v1', 'secp384r1']);

/** Why `key` is not trusted as a signature key; undefined when it is fine. */
export function weakKeyReason(key: KeyObject): string | undefined {
  if (key.type !== 'public' && key.type !== 'private') return 'not an asymmetric key';
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'rsa-pss':
      if ((details.modulusLength ?? 0) < MIN_RSA_MODULUS_BITS)
        return `RSA modulus of ${details.modulusLength ?? 0} bits; at least ${MIN_RSA_MODULUS_BITS} are required`;
      if (details.publicExponent !== RSA_PUBLIC_EXPONENT)
        return `RSA public exponent ${String(details.publicExponent)}; only ${RSA_PUBLIC_EXPONENT} is accepted`;
      return undefined;
    case 'ec':
      return ALLOWED_CURVES.has(details.namedCurve ?? '')
        ? undefined
        : `EC curve ${details.namedCurve ?? '?'}; only P-256 and P-384 are accepted`;
    case 'ed25519':
    case 'ed448':
      return undefined;
    default:
      return `key type ${key.asymmetricKeyType ?? '?'} is not accepted`;
  }
}

/** The same check for a JWK; a JWK that is not a readable public key is refused too. */
export function weakJwkReason(jwk: JsonWebKey): string | undefined {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk, format: 'jwk' });
  } catch {
    return 'not a readable public key';
  }
  return weakKeyReason(key);
}

/** A key a verifier was about to trust and refused. */
export class WeakKeyError extends Error {
  constructor(readonly reason: string) {
    super(`refused signature key: ${reason}`);
    this.name = 'WeakKeyError';
  }
}

/**
 * Wraps a key getter (jose's `createRemoteJWKSet` / `createLocalJWKSet`, or any
 * function returning a KeyObject or CryptoKey) so that a weak key is never used:
 * the getter throws WeakKeyError instead, and verification fails.
 */
export function rejectingWeakKeys<A extends unknown[], K>(getKey: (...args: A) => K | Promise<K>): (...args: A) => Promise<K> {
  return async (...args: A) => {
    const key = await getKey(...args);
    const reason = weakKeyReason(toKeyObject(key));
    if (reason) throw new WeakKeyError(reason);
    return key;
  };
}

/** weakKeyReason for whatever a verifier holds (KeyObject, CryptoKey, a secret); undefined when it is fine. */
export function weakKeyInputReason(key: unknown): string | undefined {
  try {
    return weakKeyReason(toKeyObject(key));
  } catch (err) {
    return err instanceof WeakKeyError ? err.reason : 'not a usable key';
  }
}

function toKeyObject(key: unknown): KeyObject {
  if (key instanceof KeyObject) return key;
  try {
    // A WebCrypto CryptoKey (what jose returns on Node); KeyObject.from refuses anything else.
    return KeyObject.from(key as Parameters<typeof KeyObject.from>[0]);
  } catch {
    // A shared secret (Uint8Array) or anything else is not a public key.
    throw new WeakKeyError('not an asymmetric key');
  }
}
