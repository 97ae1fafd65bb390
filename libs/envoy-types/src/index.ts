// Hand-written helpers over the generated Envoy types. The generated modules
// themselves are imported by path: `@trellis/envoy-types/envoy/config/cluster/v3/cluster`.
// The validate.rules checker (tests only: it loads the protos with protobufjs) is
// `@trellis/envoy-types/validation`, kept out of this entry so app bundles never pull it in.
export { packAny, typeUrlOf, unpackAny, unpackAnyAs } from './any';
export { ADS_PUSH_ORDER, TYPE_SHORT_NAME, TypeUrl, type XdsTypeUrl } from './type-urls';
