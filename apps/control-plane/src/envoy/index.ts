export { buildProxyResources } from './proxy-resources';
export * from './names';
export * from './resources';
export type { TranslatorSettings } from '../model';
