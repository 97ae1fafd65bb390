// The TRELLIS_* variables each app accepts, read from its zod config schema
// (apps/<app>/src/config.ts plus the shared etcd variables), so deploy files that
// set a variable the app does not know fail a test instead of being silently ignored.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
// Apps are imported only through the entry points eslint.config.mjs lists for tools.
import { loadAuthzConfig } from '../../../apps/authz/src/config';
import { loadControlPlaneConfig } from '../../../apps/control-plane/src/config';
import { loadRegistryConfig } from '../../../apps/registry/src/config';
import { type AppName, WORKSPACE_ROOT, readWorkspaceFile } from './workspace';

const VARIABLE_KEY = /^\s*(TRELLIS_[A-Z0-9_]+)\s*:/gm;

/** Variable names declared as object keys in a TypeScript source (the zod env schemas). */
export function declaredVariables(source: string): Set<string> {
  return new Set([...source.matchAll(VARIABLE_KEY)].map((m) => m[1]!));
}

export function appVariables(app: AppName): Set<string> {
  const configPath = join('apps', app, 'src/config.ts');
  if (!existsSync(join(WORKSPACE_ROOT, configPath)))
    throw new Error(`${configPath} is missing: the deploy files cannot be checked against it`);
  // The registry's image also runs `main.js setup-etcd-roles` (the Helm hook Job), with its own variables.
  const commands = app === 'registry' ? ['apps/registry/src/setup-etcd-roles.ts'] : [];
  return new Set([
    ...declaredVariables(readWorkspaceFile('libs/runtime/src/config.ts')),
    ...declaredVariables(readWorkspaceFile(configPath)),
    ...commands.flatMap((path) => [...declaredVariables(readWorkspaceFile(path))]),
  ]);
}

/** Every TRELLIS_* name mentioned anywhere in a deploy file (set, templated or in a comment). */
export function mentionedVariables(text: string): Set<string> {
  return new Set(text.match(/\bTRELLIS_[A-Z0-9_]+/g) ?? []);
}

/** Each app's own config loader: deploy files are checked with the very schema the app starts with. */
const CONFIG_LOADERS: Record<AppName, (env: NodeJS.ProcessEnv) => unknown> = {
  registry: loadRegistryConfig,
  'control-plane': loadControlPlaneConfig,
  authz: loadAuthzConfig,
};

export function loadAppConfig(app: AppName, env: Record<string, string>): unknown {
  return CONFIG_LOADERS[app](env);
}

/** `KEY=value` lines of an env file (systemd EnvironmentFile= syntax, without quoting), comments skipped. */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const eq = trimmed.indexOf('=');
    if (eq <= 0) throw new Error(`not a KEY=value line: ${JSON.stringify(trimmed)}`);
    env[trimmed.slice(0, eq)] = trimmed.slice(eq + 1);
  }
  return env;
}
