export { buildProxyResources } from './proxy-resources';
export { TranslationMemo } from './translation-memo';
export * from './names';
export * from './resources';
export type { TranslatorSettings } from '../model';
