// Test-only entry point (@trellis/mesh-schema/testing): never imported by app code.
export { accepted, meshArbitrary, RECORD_TIME, type GeneratedMesh } from './arbitraries';
