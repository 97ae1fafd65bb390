export { ConfigError, env, etcdEnvSchema, loadConfig, type EtcdEnv } from './config';
export { Health, opsRouter, type ReadinessCheck } from './health';
export { createLogger, type Logger } from './logger';
export { causeChain, installProcessGuards, runMain } from './main';
export { createMetricsRegistry } from './metrics';
export { installShutdown, type ShutdownStep } from './shutdown';
