// A private key authz signs mesh tokens with, and its public half as a JWK.
// kid is the RFC 7638 thumbprint, so every replica holding the same key agrees on it.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import { RSA_PUBLIC_EXPONENT, type PublicJwk } from '@trellis/mesh-schema';

export type SigningAlg = 'RS256' | 'ES256';

export interface SigningKey {
  kid: string;
  alg: SigningAlg;
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: PublicJwk;
  /** Where it came from (file name or env variable), for logs; never the key itself. */
  source: string;
}

export class InvalidSigningKeyError extends Error {
  constructor(source: string, problem: string) {
    super(`signing key from ${source}: ${problem}`);
    this.name = 'InvalidSigningKeyError';
  }
}

const MIN_RSA_BITS = 2048;

/** Parses a PEM private key (PKCS#8, PKCS#1 or SEC1); RSA ≥ 2048 bits signs RS256, EC P-256 signs ES256. */
export async function signingKeyFromPem(pem: string, source: string): Promise<SigningKey> {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    // The parser's message can quote key material: say only what failed.
    throw new InvalidSigningKeyError(source, 'not a readable PEM private key');
  }
  return signingKeyFromKeyObject(privateKey, source);
}

export async function signingKeyFromKeyObject(privateKey: KeyObject, source: string): Promise<SigningKey> {
  const details = privateKey.asymmetricKeyDetails ?? {};
  let alg: SigningAlg;
  if (privateKey.asymmetricKeyType === 'rsa') {
    if ((details.modulusLength ?? 0) < MIN_RSA_BITS)
      throw new InvalidSigningKeyError(source, `RSA keys must have at least ${MIN_RSA_BITS} bits`);
    // Its public half would be refused by every verifier (weakKeyReason): say so at start, not as 401s later.
    if (details.publicExponent !== RSA_PUBLIC_EXPONENT)
      throw new InvalidSigningKeyError(source, `RSA keys must have the public exponent ${RSA_PUBLIC_EXPONENT}`);
    alg = 'RS256';
  } else if (privateKey.asymmetricKeyType === 'ec' && details.namedCurve === 'prime256v1') {
    alg = 'ES256';
  } else {
    throw new InvalidSigningKeyError(source, 'only RSA (RS256) and EC P-256 (ES256) keys are supported');
  }
  const publicKey = createPublicKey(privateKey);
  const jwk = publicKey.export({ format: 'jwk' });
  const kid = await calculateJwkThumbprint(jwk as Parameters<typeof calculateJwkThumbprint>[0], 'sha256');
  const publicJwk: PublicJwk =
    alg === 'RS256'
      ? { kty: 'RSA', kid, alg, use: 'sig', n: jwk.n!, e: jwk.e! }
      : { kty: 'EC', kid, alg, use: 'sig', crv: jwk.crv!, x: jwk.x!, y: jwk.y! };
  return { kid, alg, privateKey, publicKey, publicJwk, source };
}

/**
 * A fresh key for local development and tests. Generated as PEM and parsed again
 * rather than used as the KeyObject Node returns: that object shares a mutex with
 * Node's key-generation job, and if the job is garbage-collected while
 * asymmetricKeyDetails holds that mutex (Node 20), the process deadlocks — seen
 * once as a test worker blocked forever in ~KeyGenJob under GetRsaKeyDetail.
 */
export async function generateSigningKey(alg: SigningAlg = 'RS256', source = 'generated'): Promise<SigningKey> {
  const privateKeyEncoding = { type: 'pkcs8', format: 'pem' } as const;
  const publicKeyEncoding = { type: 'spki', format: 'pem' } as const;
  const { privateKey } =
    alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding, publicKeyEncoding })
      : generateKeyPairSync('ec', { namedCurve: 'prime256v1', privateKeyEncoding, publicKeyEncoding });
  return signingKeyFromKeyObject(createPrivateKey(privateKey), source);
}
