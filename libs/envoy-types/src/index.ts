// Hand-written helpers over the generated Envoy types. The generated modules
// themselves are imported by path: `@trellis/envoy-types/envoy/config/cluster/v3/cluster`.
export { packAny, typeUrlOf, unpackAny, unpackAnyAs } from './any';
export { ADS_PUSH_ORDER, TYPE_SHORT_NAME, TypeUrl, type XdsTypeUrl } from './type-urls';
export { ProtoValidator, type ProtoValidatorOptions, type Violation } from './validation';
