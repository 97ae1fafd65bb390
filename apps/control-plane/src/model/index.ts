export { buildMeshModel, mergePolicy, servicesAffected, type MeshStateView } from './build-mesh-model';
export * from './mesh-model';
