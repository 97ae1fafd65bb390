// Test-only entry point (@trellis/mesh-schema/testing): never imported by app code.
export { accepted, meshArbitrary, meshStateOf, propertyRuns, RECORD_TIME, trafficPolicyArbitrary, type GeneratedMesh } from './arbitraries';
