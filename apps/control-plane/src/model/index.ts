export { buildMeshModel, mergePolicy, servicesAffected, type MeshStateView } from './build-mesh-model';
export { meshModelToDot } from './mesh-dot';
export * from './mesh-model';
