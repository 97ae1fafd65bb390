// Proxy status: what each xDS stream last ACKed or NACKed, under the control
// plane replica's lease, one key per stream.
import { encodeValue } from '../codec';
import { ProxyStatus } from '../records';
import { validateFirst, type EtcdRecords } from './etcd-records';

export class ProxyStatusStore {
  constructor(private readonly records: EtcdRecords) {}

  /**
   * Writes a stream's proxy status under the control plane replica's lease (gone when the
   * replica is), at a key of its own stream: another stream's record is never touched.
   */
  async putProxyStatus(status: ProxyStatus & { stream: string }, leaseId: string): Promise<void> {
    const valid = validateFirst(ProxyStatus, `proxy status ${JSON.stringify(`${status.service}/${status.nodeId}`)}`, status);
    const key = this.records.layout.proxyStatus(valid.service, valid.nodeId, status.stream);
    await this.records.putKv({ key: Buffer.from(key), value: encodeValue(ProxyStatus, key, status).bytes, lease: leaseId });
  }
  /** Removes one stream's proxy status (it closed); a status that is already gone is fine. */
  async deleteProxyStatus(service: string, nodeId: string, stream: string): Promise<void> {
    await this.records.deleteKv({ key: Buffer.from(this.records.layout.proxyStatus(service, nodeId, stream)) });
  }
  async listProxyStatuses(service?: string): Promise<ProxyStatus[]> {
    const prefix = service === undefined ? this.records.layout.proxyStatuses() : this.records.layout.proxyStatusesOf(service);
    return (await this.records.listVersioned(ProxyStatus, prefix)).map((v) => v.value);
  }
}
