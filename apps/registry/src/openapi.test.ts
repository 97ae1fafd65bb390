// The OpenAPI document as a client generator and a validator read it: every operation named
// and secured, every pattern a valid ECMA-262 `u` regex that accepts its documented examples,
// and a client generated from it by openapi-typescript type-checks.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildOpenApiDocument } from './openapi';

const doc = buildOpenApiDocument();
const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;
const operations = Object.entries(doc.paths ?? {}).flatMap(([path, item]) =>
  METHODS.filter((m) => (item as Record<string, unknown>)[m]).map((method) => ({
    method,
    path,
    op: (item as Record<string, { operationId?: string; security?: Array<Record<string, string[]>> }>)[method]!,
  })),
);

/** Every schema object in the document, wherever it is nested. */
function schemas(node: unknown, out: Array<Record<string, unknown>> = []): Array<Record<string, unknown>> {
  if (Array.isArray(node)) node.forEach((n) => schemas(n, out));
  else if (node && typeof node === 'object') {
    out.push(node as Record<string, unknown>);
    Object.values(node).forEach((n) => schemas(n, out));
  }
  return out;
}

describe('the OpenAPI document', () => {
  it('names every operation, uniquely', () => {
    const ids = operations.map((o) => o.op.operationId);
    expect(ids.filter((id) => !id)).toEqual([]);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('declares security on every operation: writes need a credential, reads accept the bearer token', () => {
    for (const { method, path, op } of operations) {
      const anonymous = op.security?.some((requirement) => Object.keys(requirement).length === 0);
      expect({ method, path, anonymous, bearer: op.security?.some((r) => 'bearer' in r) }).toEqual({
        method,
        path,
        anonymous: method === 'get',
        bearer: true,
      });
    }
  });

  it('has a license', () => {
    expect(doc.info.license).toEqual({ name: 'Apache-2.0', identifier: 'Apache-2.0' });
  });

  it('every pattern compiles as a JSON Schema (ECMA-262, unicode) regex and accepts its examples', () => {
    const withPattern = schemas(doc).filter((s) => typeof s['pattern'] === 'string');
    expect(withPattern.length).toBeGreaterThan(5);
    for (const schema of withPattern) {
      const pattern = schema['pattern'] as string;
      const regex = new RegExp(pattern, 'u');
      const examples = [schema['example'], ...((schema['examples'] as unknown[]) ?? [])].filter((e) => e !== undefined);
      for (const example of examples) expect({ pattern, example, matches: regex.test(String(example)) }).toMatchObject({ matches: true });
    }
    // The instance id pattern once carried a JavaScript `/i` and matched nothing.
    const instanceId = doc.components!.schemas!['Instance'] as { properties: { id: Record<string, string> } };
    expect(new RegExp(instanceId.properties.id['pattern']!, 'u').test(instanceId.properties.id['example']!)).toBe(true);
  });

  it('uses only formats JSON Schema defines (ipv4/ipv6, not ip)', () => {
    const formats = new Set(schemas(doc).flatMap((s) => (typeof s['format'] === 'string' ? [s['format']] : [])));
    expect([...formats].sort()).toEqual(['date-time', 'ipv4', 'ipv6']);
  });

  it('generates a client with openapi-typescript that type-checks against openapi-fetch', () => {
    const root = resolve(__dirname, '../../..');
    const dir = mkdtempSync(join(tmpdir(), 'trellis-openapi-client-'));
    try {
      writeFileSync(join(dir, 'openapi.json'), JSON.stringify(doc));
      const generated = spawnSync(
        join(root, 'node_modules/.bin/openapi-typescript'),
        [join(dir, 'openapi.json'), '--default-non-nullable', 'false', '-o', join(dir, 'registry.d.ts')],
        {
          encoding: 'utf8',
        },
      );
      expect(generated.status === 0 ? 'ok' : `${generated.stdout}${generated.stderr}`).toBe('ok');
      // --default-non-nullable false: a request may leave out what has a default (the server fills it in).
      // A client using a read and a write operation; a wrong path must fail, so the types are real.
      writeFileSync(
        join(dir, 'client.ts'),
        `import createClient from 'openapi-fetch';
import type { paths } from './registry';
const client = createClient<paths>({ baseUrl: 'http://registry:8080' });
export async function use(): Promise<string[]> {
  const list = await client.GET('/api/v1/services', {});
  await client.PUT('/api/v1/services/{name}', {
    params: { path: { name: 'payments' }, header: { 'If-Match': '"7"' } },
    body: { name: 'payments', team: 'payments', port: 8080, protocol: 'grpc', dependencies: [{ service: 'ledger' }] },
  });
  const instances = await client.GET('/api/v1/services/{name}/instances', { params: { path: { name: 'payments' } } });
  const addresses: string[] = instances.data?.items.map((i) => i.address) ?? [];
  return [...(list.data?.items.map((s) => s.spec.name) ?? []), ...addresses];
}
// @ts-expect-error: the document has no such path
void client.GET('/api/v1/nothing');
`,
      );
      writeFileSync(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            noEmit: true,
            module: 'nodenext',
            moduleResolution: 'nodenext',
            target: 'es2022',
            skipLibCheck: true,
            typeRoots: [],
            types: [],
            baseUrl: '.',
            paths: { 'openapi-fetch': [join(root, 'node_modules/openapi-fetch')] },
          },
          files: ['client.ts'],
        }),
      );
      const checked = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')], {
        encoding: 'utf8',
      });
      expect(checked.status === 0 ? 'ok' : checked.stdout).toBe('ok');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
