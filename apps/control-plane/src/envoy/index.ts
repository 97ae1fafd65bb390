export { buildProxyResources, sharedUpstreamsChange } from './proxy-resources';
export * from './names';
export { rebindProxylessServerListener } from './listeners';
export { undeclaredTargetResource } from './refused-target';
export type { TranslatorSettings } from '../model';
// Moved to ../resource (shared with the xDS side); re-exported so existing imports keep working.
export * from '../resource';
