// MeshStore: typed, validated reads and conditional writes of every Trellis
// record in etcd, one family per file under store/ (services with history and
// host claims, instances with leases, mesh settings, authz keys, proxy status).
// This is the one handle apps hold; each operation is its family's.
import type { Etcd3 } from 'etcd3';
import type { KeyLayout } from './keys';
import { AuthzKeyStore, MeshSettingsStore } from './store/authz-store';
import { EtcdRecords, type MeshStoreOptions } from './store/etcd-records';
import { InstanceStore } from './store/instance-store';
import { ProxyStatusStore } from './store/proxy-status-store';
import { ServiceStore } from './store/service-store';

export type { MeshStoreOptions } from './store/etcd-records';
export { LeasePool, type LeasePoolOptions } from './store/lease-pool';
export type { RegisterInstanceInput } from './store/instance-store';
export type { UpdateServiceOptions } from './store/service-store';

export class MeshStore {
  readonly services: ServiceStore;
  readonly instances: InstanceStore;
  readonly meshSettings: MeshSettingsStore;
  readonly authzKeys: AuthzKeyStore;
  readonly proxyStatus: ProxyStatusStore;

  constructor(client: Etcd3, layout: KeyLayout, opts: MeshStoreOptions = {}) {
    const records = new EtcdRecords(client, layout, opts);
    this.services = new ServiceStore(records);
    this.instances = new InstanceStore(records);
    this.meshSettings = new MeshSettingsStore(records);
    this.authzKeys = new AuthzKeyStore(records);
    this.proxyStatus = new ProxyStatusStore(records);
  }

  // ---- services, history, ingress hosts ---------------------------------------
  getService(...args: Parameters<ServiceStore['getService']>): ReturnType<ServiceStore['getService']> {
    return this.services.getService(...args);
  }
  listServices(...args: Parameters<ServiceStore['listServices']>): ReturnType<ServiceStore['listServices']> {
    return this.services.listServices(...args);
  }
  createService(...args: Parameters<ServiceStore['createService']>): ReturnType<ServiceStore['createService']> {
    return this.services.createService(...args);
  }
  updateService(...args: Parameters<ServiceStore['updateService']>): ReturnType<ServiceStore['updateService']> {
    return this.services.updateService(...args);
  }
  deleteService(...args: Parameters<ServiceStore['deleteService']>): ReturnType<ServiceStore['deleteService']> {
    return this.services.deleteService(...args);
  }
  listHistory(...args: Parameters<ServiceStore['listHistory']>): ReturnType<ServiceStore['listHistory']> {
    return this.services.listHistory(...args);
  }
  listHistoryVersioned(...args: Parameters<ServiceStore['listHistoryVersioned']>): ReturnType<ServiceStore['listHistoryVersioned']> {
    return this.services.listHistoryVersioned(...args);
  }
  getHistory(...args: Parameters<ServiceStore['getHistory']>): ReturnType<ServiceStore['getHistory']> {
    return this.services.getHistory(...args);
  }
  getHostClaim(...args: Parameters<ServiceStore['getHostClaim']>): ReturnType<ServiceStore['getHostClaim']> {
    return this.services.getHostClaim(...args);
  }
  listHostClaims(...args: Parameters<ServiceStore['listHostClaims']>): ReturnType<ServiceStore['listHostClaims']> {
    return this.services.listHostClaims(...args);
  }
  assignHost(...args: Parameters<ServiceStore['assignHost']>): ReturnType<ServiceStore['assignHost']> {
    return this.services.assignHost(...args);
  }

  // ---- instances ------------------------------------------------------------
  registerInstance(...args: Parameters<InstanceStore['registerInstance']>): ReturnType<InstanceStore['registerInstance']> {
    return this.instances.registerInstance(...args);
  }
  heartbeatInstance(...args: Parameters<InstanceStore['heartbeatInstance']>): ReturnType<InstanceStore['heartbeatInstance']> {
    return this.instances.heartbeatInstance(...args);
  }
  drainInstance(...args: Parameters<InstanceStore['drainInstance']>): ReturnType<InstanceStore['drainInstance']> {
    return this.instances.drainInstance(...args);
  }
  deregisterInstance(...args: Parameters<InstanceStore['deregisterInstance']>): ReturnType<InstanceStore['deregisterInstance']> {
    return this.instances.deregisterInstance(...args);
  }
  listInstances(...args: Parameters<InstanceStore['listInstances']>): ReturnType<InstanceStore['listInstances']> {
    return this.instances.listInstances(...args);
  }

  // ---- mesh settings and authz keys ------------------------------------------
  getMeshSettings(...args: Parameters<MeshSettingsStore['getMeshSettings']>): ReturnType<MeshSettingsStore['getMeshSettings']> {
    return this.meshSettings.getMeshSettings(...args);
  }
  ensureMeshSettings(...args: Parameters<MeshSettingsStore['ensureMeshSettings']>): ReturnType<MeshSettingsStore['ensureMeshSettings']> {
    return this.meshSettings.ensureMeshSettings(...args);
  }
  listAuthzKeys(...args: Parameters<AuthzKeyStore['listAuthzKeys']>): ReturnType<AuthzKeyStore['listAuthzKeys']> {
    return this.authzKeys.listAuthzKeys(...args);
  }
  putAuthzKey(...args: Parameters<AuthzKeyStore['putAuthzKey']>): ReturnType<AuthzKeyStore['putAuthzKey']> {
    return this.authzKeys.putAuthzKey(...args);
  }
  deleteAuthzKey(...args: Parameters<AuthzKeyStore['deleteAuthzKey']>): ReturnType<AuthzKeyStore['deleteAuthzKey']> {
    return this.authzKeys.deleteAuthzKey(...args);
  }

  // ---- proxy status ----------------------------------------------------------
  putProxyStatus(...args: Parameters<ProxyStatusStore['putProxyStatus']>): ReturnType<ProxyStatusStore['putProxyStatus']> {
    return this.proxyStatus.putProxyStatus(...args);
  }
  deleteProxyStatus(...args: Parameters<ProxyStatusStore['deleteProxyStatus']>): ReturnType<ProxyStatusStore['deleteProxyStatus']> {
    return this.proxyStatus.deleteProxyStatus(...args);
  }
  writeProxyStatuses(...args: Parameters<ProxyStatusStore['writeProxyStatuses']>): ReturnType<ProxyStatusStore['writeProxyStatuses']> {
    return this.proxyStatus.writeProxyStatuses(...args);
  }
  listProxyStatuses(...args: Parameters<ProxyStatusStore['listProxyStatuses']>): ReturnType<ProxyStatusStore['listProxyStatuses']> {
    return this.proxyStatus.listProxyStatuses(...args);
  }
}
