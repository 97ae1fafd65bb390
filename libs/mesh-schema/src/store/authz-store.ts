// What authz writes: the mesh-wide settings (once, as defaults) and its public keys.
import { decodeKv, encodeValue } from '../codec';
import { AuthzPublicKey, MeshSettings } from '../records';
import { absent, put, validateFirst, type EtcdRecords } from './etcd-records';

export class MeshSettingsStore {
  constructor(private readonly records: EtcdRecords) {}

  async getMeshSettings(): Promise<MeshSettings | undefined> {
    const kv = await this.records.getKv(this.records.layout.meshSettings());
    return kv ? decodeKv(MeshSettings, kv).value : undefined;
  }
  /** Writes `defaults` only if no settings exist yet; returns what is stored either way. */
  async ensureMeshSettings(defaults: MeshSettings): Promise<MeshSettings> {
    const key = this.records.layout.meshSettings();
    const encoded = encodeValue(MeshSettings, key, defaults);
    const res = await this.records.txn({
      compare: [absent(key)],
      success: [put(key, encoded.bytes)],
      failure: [{ request_range: { key: Buffer.from(key) } }],
    });
    if (res.succeeded) return encoded.value;
    const kv = res.responses[0]?.response_range.kvs[0];
    if (!kv) return this.ensureMeshSettings(defaults); // deleted in between: try again
    return decodeKv(MeshSettings, kv).value;
  }
}

export class AuthzKeyStore {
  constructor(private readonly records: EtcdRecords) {}

  async listAuthzKeys(): Promise<AuthzPublicKey[]> {
    return (await this.records.listVersioned(AuthzPublicKey, this.records.layout.authzKeys())).map((v) => v.value);
  }
  async putAuthzKey(key: AuthzPublicKey): Promise<void> {
    const etcdKey = this.records.layout.authzKey(validateFirst(AuthzPublicKey, `authz key ${JSON.stringify(key.kid)}`, key).kid);
    await this.records.putKv({ key: Buffer.from(etcdKey), value: encodeValue(AuthzPublicKey, etcdKey, key).bytes });
  }
  async deleteAuthzKey(kid: string): Promise<void> {
    await this.records.deleteKv({ key: Buffer.from(this.records.layout.authzKey(kid)) });
  }
}
