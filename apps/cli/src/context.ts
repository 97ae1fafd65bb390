// Where the inspection commands point, like kubectl contexts: --registry,
// --control-plane and --token flags, else TRELLIS_REGISTRY_URL,
// TRELLIS_CONTROL_PLANE_URL and TRELLIS_TOKEN, else the current (or --context)
// context of the config file (TRELLIS_CONFIG, default ~/.config/trellis/config.yaml),
// else the local mesh's conventional ports.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';

const ContextEntry = z
  .object({
    registry: z.url().optional(),
    'control-plane': z.url().optional(),
    token: z.string().min(1).optional(),
    /** A file holding the token, so the config file itself holds no secret. */
    'token-file': z.string().min(1).optional(),
  })
  .strict();

const ConfigFile = z
  .object({
    'current-context': z.string().optional(),
    contexts: z.record(z.string(), ContextEntry).default({}),
  })
  .strict();

export interface GlobalFlags {
  registry?: string;
  controlPlane?: string;
  token?: string;
  context?: string;
}

export interface Context {
  name?: string;
  registryUrl: string;
  controlPlaneUrl: string;
  token?: string;
}

export const DEFAULT_REGISTRY_URL = 'http://127.0.0.1:8080';
export const DEFAULT_CONTROL_PLANE_URL = 'http://127.0.0.1:18080';

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return env['TRELLIS_CONFIG'] ?? join(env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config'), 'trellis', 'config.yaml');
}

export function resolveContext(flags: GlobalFlags, env: NodeJS.ProcessEnv = process.env, readFile = readOptional): Context {
  const path = configPath(env);
  const text = readFile(path);
  let file: z.infer<typeof ConfigFile> = { contexts: {} };
  if (text !== undefined) {
    const parsed = ConfigFile.safeParse(parse(text) ?? {});
    if (!parsed.success)
      throw new Error(`${path}: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'file'}: ${i.message}`).join('; ')}`);
    file = parsed.data;
  }
  const name = flags.context ?? env['TRELLIS_CONTEXT'] ?? file['current-context'];
  const entry = name !== undefined ? file.contexts[name] : undefined;
  if (name !== undefined && !entry && (flags.context ?? env['TRELLIS_CONTEXT']))
    throw new Error(`context "${name}" is not in ${path} (it has: ${Object.keys(file.contexts).join(', ') || 'none'})`);
  const tokenFromFile = entry?.['token-file'] ? readFile(entry['token-file'])?.trim() : undefined;
  const token = flags.token ?? env['TRELLIS_TOKEN'] ?? entry?.token ?? tokenFromFile;
  return {
    ...(name !== undefined ? { name } : {}),
    registryUrl: flags.registry ?? env['TRELLIS_REGISTRY_URL'] ?? entry?.registry ?? DEFAULT_REGISTRY_URL,
    controlPlaneUrl: flags.controlPlane ?? env['TRELLIS_CONTROL_PLANE_URL'] ?? entry?.['control-plane'] ?? DEFAULT_CONTROL_PLANE_URL,
    ...(token ? { token } : {}),
  };
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
