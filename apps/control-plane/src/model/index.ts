export {
  affectedTest,
  buildMeshModel,
  dependencyPolicy,
  identityFingerprint,
  mergePolicy,
  servicesAffected,
  type MeshStateView,
} from './build-mesh-model';
export { meshModelToDot } from './mesh-dot';
export * from './mesh-model';
export { DEFAULT_RETENTION_SETTINGS, EndpointRetention, type RetainedEndpoint, type RetentionSettings } from './endpoint-retention';
