// The contract between translation (model → Envoy resources, ../envoy) and the
// xDS side (cache → streams, ../xds): what a resource and a proxy identity are,
// the memo translation shares resources through, and the consistency check a
// snapshot passes before it is published. Both stages import this; neither
// imports the other.
export { canonicalDigest, digestText } from './canonical-digest';
export { endpointsNameOf, snapshotInconsistencies } from './consistency';
export { TranslationMemo, type ResourceBuilder } from './translation-memo';
export * from './xds-resource';
