// What the deployables agree on that is not stored in etcd: fixed names, and the
// rules each side must apply the same way. @trellis/mesh-schema re-exports it.
export * from './conventions';
export * from './mesh-token';
export * from './calls';
export * from './public-keys';
export * from './secrets';
export * from './sidecar-certificates';
export * from './token-claims';
export * from './trace-context';
