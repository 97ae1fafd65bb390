// `trellis apply -f FILE|DIR`: makes the registry hold exactly the service definitions
// in the YAML files — the GitOps path. Idempotent: a definition equal to the stored
// one (after defaults) is left alone, so a second run changes nothing and says so.
// Replacing uses If-Match with the ETag just read; a 412 (someone changed it in
// between) is read again and retried.
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { ServiceSpec } from '@trellis/mesh-schema';
import { parseAllDocuments, stringify } from 'yaml';
import { ok, RegistryError, type RegistryClient, type ServiceSpec as ApiServiceSpec } from '../registry/registry-client';
import { lineDiff } from './line-diff';

export type ApplyAction = 'created' | 'configured' | 'unchanged';

export interface ApplyResult {
  name: string;
  action: ApplyAction;
  /** Lines of the change (`+ `/`- `/`  `), for --dry-run and -o json. */
  diff: string[];
  file: string;
}

export interface Manifest {
  file: string;
  spec: ServiceSpec;
}

const MAX_CONFLICT_RETRIES = 5;

/** Every `.yaml`/`.yml` file under `path` (or the file itself), each document a ServiceSpec; errors name file, document and field. */
export async function loadManifests(path: string): Promise<Manifest[]> {
  const files = (await stat(path)).isDirectory() ? await yamlFilesUnder(path) : [path];
  const manifests: Manifest[] = [];
  const problems: string[] = [];
  for (const file of files) {
    const docs = parseAllDocuments(await readFile(file, 'utf8'));
    docs.forEach((doc, index) => {
      const where = docs.length > 1 ? `${file} (document ${index + 1})` : file;
      if (doc.errors.length) return void problems.push(`${where}: ${doc.errors[0]!.message}`);
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) return;
      const parsed = ServiceSpec.safeParse(value);
      if (!parsed.success)
        return void problems.push(...parsed.error.issues.map((i) => `${where}: ${i.path.join('.') || 'document'}: ${i.message}`));
      manifests.push({ file, spec: parsed.data });
    });
  }
  const seen = new Map<string, string>();
  for (const m of manifests) {
    const earlier = seen.get(m.spec.name);
    if (earlier) problems.push(`${m.file}: service "${m.spec.name}" is also defined in ${earlier}`);
    seen.set(m.spec.name, m.file);
  }
  if (problems.length) throw new Error(`invalid manifests:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  return orderByDependencies(manifests);
}

async function yamlFilesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() && !entry.name.startsWith('.')) out.push(...(await yamlFilesUnder(path)));
    else if (entry.isFile() && ['.yaml', '.yml'].includes(extname(entry.name))) out.push(path);
  }
  return out;
}

/** Callees before their callers, so a new service's dependencies exist when it is written. */
export function orderByDependencies(manifests: Manifest[]): Manifest[] {
  const byName = new Map(manifests.map((m) => [m.spec.name, m]));
  const ordered: Manifest[] = [];
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = (m: Manifest) => {
    if (done.has(m.spec.name) || visiting.has(m.spec.name)) return;
    visiting.add(m.spec.name);
    for (const dep of m.spec.dependencies) {
      const callee = byName.get(dep.service);
      if (callee) visit(callee);
    }
    done.add(m.spec.name);
    ordered.push(m);
  };
  [...manifests].sort((a, b) => a.spec.name.localeCompare(b.spec.name)).forEach(visit);
  return ordered;
}

/** The YAML a spec is compared and diffed as: defaults filled, keys sorted. */
export function canonicalYaml(spec: unknown): string {
  return stringify(sortKeys(ServiceSpec.parse(spec)));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => [k, sortKeys(v)]),
    );
  return value;
}

export async function applyManifest(registry: RegistryClient, manifest: Manifest, dryRun: boolean): Promise<ApplyResult> {
  const { name } = manifest.spec;
  const desired = canonicalYaml(manifest.spec);
  for (let attempt = 0; ; attempt++) {
    const current = await registry.GET('/api/v1/services/{name}', { params: { path: { name } } });
    if (current.response.status !== 404) ok(current, `get ${name}`);
    const stored = current.data ? canonicalYaml(current.data.spec) : '';
    const diff = lineDiff(stored, desired);
    if (current.data && stored === desired) return { name, action: 'unchanged', diff, file: manifest.file };
    const action: ApplyAction = current.data ? 'configured' : 'created';
    if (dryRun) return { name, action, diff, file: manifest.file };

    // Only a stored service's ETag is its revision (express tags other answers too).
    const etag = current.data ? current.response.headers.get('etag') : null;
    const put = await registry.PUT('/api/v1/services/{name}', {
      params: { path: { name }, header: etag ? { 'If-Match': etag } : {} },
      body: manifest.spec as ApiServiceSpec,
    });
    // 412: changed since we read it; 428: created since we saw it absent. Read again and retry.
    if ((put.response.status === 412 || put.response.status === 428) && attempt < MAX_CONFLICT_RETRIES) continue;
    ok(put, `apply ${name}`);
    return { name, action, diff, file: manifest.file };
  }
}

export { RegistryError };
