// The registry and control-plane clients an inspection command needs, from the context.
import type { Command } from 'commander';
import { resolveContext, type Context } from '../context';
import { createRegistryClient, type RegistryClient } from '../registry/registry-client';
import { CliError } from '../output';

export function contextOf(cmd: Command): Context {
  try {
    return resolveContext(cmd.optsWithGlobals());
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
}

export function registryOf(cmd: Command): RegistryClient {
  const context = contextOf(cmd);
  return createRegistryClient({ baseUrl: context.registryUrl, ...(context.token ? { authorization: `Bearer ${context.token}` } : {}) });
}

/** GET on the control plane's HTTP side; a problem answer becomes a CliError naming it. */
export async function controlPlaneGet(cmd: Command, path: string): Promise<unknown> {
  const { controlPlaneUrl, token } = contextOf(cmd);
  const url = `${controlPlaneUrl.replace(/\/+$/, '')}${path}`;
  // The debug endpoints need the admin token (the registry's) unless asked from the control plane's own host.
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) }).catch((err: Error) => {
    throw new CliError(`GET ${url}: ${(err.cause as Error | undefined)?.message ?? err.message}`);
  });
  const text = await res.text();
  if (!res.ok) {
    let detail = text.slice(0, 300);
    try {
      const problem = JSON.parse(text) as { title?: string; detail?: string };
      detail = [problem.title, problem.detail].filter(Boolean).join(': ');
    } catch {
      // not a problem document
    }
    const hint = res.status === 401 ? ' (set TRELLIS_TOKEN or the context token to the admin token)' : '';
    throw new CliError(`GET ${url}: ${res.status} ${detail}${hint}`);
  }
  return JSON.parse(text) as unknown;
}
