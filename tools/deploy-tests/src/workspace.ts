// Where the deployment artefacts live, and the apps they deploy.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const WORKSPACE_ROOT = resolve(__dirname, '../../..');
export const DEPLOY_DIR = join(WORKSPACE_ROOT, 'deploy');

export const APPS = ['registry', 'control-plane', 'authz'] as const;
export type AppName = (typeof APPS)[number];

export function readWorkspaceFile(...segments: string[]): string {
  return readFileSync(join(WORKSPACE_ROOT, ...segments), 'utf8');
}
