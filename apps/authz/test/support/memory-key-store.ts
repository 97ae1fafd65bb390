// An in-memory AuthzKeyStore for unit tests of the key ring and what uses it
// (the etcd-backed store is covered in test/authz.test.ts).
import type { AuthzPublicKey } from '@trellis/mesh-schema';
import type { AuthzKeyStore } from '../../src/keys/key-ring';

export class MemoryKeyStore implements AuthzKeyStore {
  readonly keys = new Map<string, AuthzPublicKey>();
  async listAuthzKeys() {
    return [...this.keys.values()];
  }
  async putAuthzKey(key: AuthzPublicKey) {
    this.keys.set(key.kid, key);
  }
  async deleteAuthzKey(kid: string) {
    this.keys.delete(kid);
  }
}
