// Names and rules shared beyond etcd live in @trellis/mesh-contracts; re-exported so imports from here keep working.
export * from '@trellis/mesh-contracts';
export * from './records';
export * from './keys';
export * from './errors';
export { type Versioned, describeIssues } from './codec';
export {
  connectEtcd,
  etcdOptionsFromEnv,
  ETCD_KEEPALIVE,
  etcdStatus,
  etcdStreamErrorCode,
  keptAliveLease,
  prefixEnd,
  rangePrefix,
  RANGE_PAGE_SIZE,
  type EtcdClient,
  type EtcdConnectionOptions,
  type KeptAliveLease,
} from './etcd-client';
export {
  LeasePool,
  MeshStore,
  type LeasePoolOptions,
  type MeshStoreOptions,
  type RegisterInstanceInput,
  type UpdateServiceOptions,
} from './store';
export type { ProxyStatusRef, StreamProxyStatus } from './store/proxy-status-store';
export {
  applyKvEvent,
  buildMeshState,
  emptyMeshState,
  type InvalidRecord,
  type KvEvent,
  type MeshChange,
  type MeshChangeKind,
  type MeshState,
} from './state';
export { MeshWatcher, type MeshUpdate, type MeshWatcherEvents, type MeshWatcherOptions } from './watcher';
export { takeWrittenJson, WrittenValues } from './written-values';
export { CheckedServiceSpec } from './store/checked-spec';
export {
  CheckedInstanceRegistration,
  InstanceRegistration,
  type CheckedInstanceFields,
  type InstanceFields,
} from './store/checked-instance';
export {
  ReloadingServiceCredentials,
  ServiceCredentials,
  type CredentialsReloadResult,
  type ReloadingServiceCredentialsOptions,
} from './service-credentials';
export { EtcdProbe, type EtcdProbeOptions } from './etcd-probe';
export { applyEtcdRoles, etcdGrants, etcdRoleName, ETCD_APPS, type EtcdApp, type EtcdGrant, type EtcdRolesSetup } from './etcd-roles';
