// @peculiar/x509 wired to Node's WebCrypto, in one place: every module that
// builds or parses certificates imports it from here. reflect-metadata is the
// decorator runtime its ASN.1 schemas need.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

// WebCrypto types from Node (the workspace compiles without the DOM lib).
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** The WebCrypto algorithm that signs with a key of this kind (SHA-256 either way). */
export function signingAlgorithmOf(key: CryptoKey): webcrypto.RsaHashedImportParams | webcrypto.EcdsaParams {
  return key.algorithm.name === 'ECDSA' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
}

/** Splits a PEM bundle into its certificates (anything else in the text is ignored). */
export function pemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
