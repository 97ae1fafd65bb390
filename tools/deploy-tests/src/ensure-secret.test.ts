// files/ensure-secret.mjs, the charts' secret-generating hook: run as the Job runs it (node,
// the environment the chart sets) against a small in-memory Kubernetes Secrets API.
import { spawn } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { HELM_DIR } from './helm-charts';

const SCRIPT = join(HELM_DIR, 'trellis/charts/authz/files/ensure-secret.mjs');
const TOKEN = 'hook-service-account-token';

interface Secret {
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  data: Record<string, string>;
}

/** GET/POST/PATCH on /api/v1/namespaces/<ns>/secrets[/<name>], as the API server answers them. */
class FakeSecretsApi {
  readonly secrets = new Map<string, Secret>();
  readonly calls: string[] = [];
  deny = false;
  private server: Server | undefined;

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        this.calls.push(`${req.method} ${req.url}`);
        const reply = (status: number, payload: object) =>
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(payload));
        if (req.headers.authorization !== `Bearer ${TOKEN}`) return reply(401, { reason: 'Unauthorized' });
        if (this.deny) return reply(403, { reason: 'Forbidden', message: 'secrets is forbidden' });
        const match = /^\/api\/v1\/namespaces\/([^/]+)\/secrets(?:\/([^/]+))?$/.exec(req.url ?? '');
        if (!match) return reply(404, { reason: 'NotFound' });
        const [, namespace, name] = match;
        const key = `${namespace}/${name}`;
        if (req.method === 'GET') return this.secrets.has(key) ? reply(200, this.secrets.get(key)!) : reply(404, { reason: 'NotFound' });
        if (req.method === 'POST') {
          const secret = JSON.parse(body) as Secret;
          const created = `${namespace}/${secret.metadata.name}`;
          if (this.secrets.has(created)) return reply(409, { reason: 'AlreadyExists' });
          this.secrets.set(created, secret);
          return reply(201, secret);
        }
        if (req.method === 'PATCH' && req.headers['content-type'] === 'application/merge-patch+json') {
          const secret = this.secrets.get(key);
          if (!secret) return reply(404, { reason: 'NotFound' });
          secret.data = { ...secret.data, ...(JSON.parse(body) as Secret).data };
          return reply(200, secret);
        }
        return reply(405, { reason: 'MethodNotAllowed' });
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  stop = () => new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
}

function runHook(api: string, keys: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SCRIPT], {
      env: {
        PATH: process.env['PATH'],
        KUBERNETES_API: api,
        KUBERNETES_TOKEN: TOKEN,
        SECRET_NAME: 'trellis-authz-signing-keys',
        SECRET_NAMESPACE: 'mesh',
        SECRET_KEYS: JSON.stringify(keys),
        SECRET_LABELS: JSON.stringify({ 'app.kubernetes.io/name': 'authz' }),
      },
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('close', (code) => resolve({ code, output }));
  });
}

const decode = (value: string) => Buffer.from(value, 'base64').toString('utf8');

describe('ensure-secret.mjs (the secret generator hook)', () => {
  const api = new FakeSecretsApi();
  let url: string;
  beforeAll(async () => (url = await api.start()));
  afterAll(() => api.stop());
  beforeEach(() => {
    api.secrets.clear();
    api.calls.length = 0;
    api.deny = false;
  });

  it('creates a missing Secret with a usable RSA-4096 key and a random value', async () => {
    const result = await runHook(url, { 'signing-key.pem': 'rsa-4096-pem', 'csrf-secret': 'random-48' });
    expect(result).toEqual({ code: 0, output: expect.stringContaining('created') });
    const secret = api.secrets.get('mesh/trellis-authz-signing-keys')!;
    expect(secret.metadata.labels).toEqual({ 'app.kubernetes.io/name': 'authz' });
    const key = createPrivateKey(decode(secret.data['signing-key.pem']!));
    expect([key.asymmetricKeyType, key.asymmetricKeyDetails?.modulusLength]).toEqual(['rsa', 4096]);
    expect(decode(secret.data['csrf-secret']!)).toMatch(/^[A-Za-z0-9_-]{48}$/);
  });

  it('leaves an existing Secret as it is: a second run writes nothing', async () => {
    await runHook(url, { 'csrf-secret': 'random-48' });
    const first = api.secrets.get('mesh/trellis-authz-signing-keys')!.data['csrf-secret'];
    api.calls.length = 0;
    const again = await runHook(url, { 'csrf-secret': 'random-48' });
    expect(again.code).toBe(0);
    expect(api.calls).toEqual(['GET /api/v1/namespaces/mesh/secrets/trellis-authz-signing-keys']);
    expect(api.secrets.get('mesh/trellis-authz-signing-keys')!.data['csrf-secret']).toBe(first);
  });

  it('adds only the keys an existing Secret lacks, never replacing a value', async () => {
    api.secrets.set('mesh/trellis-authz-signing-keys', {
      metadata: { name: 'trellis-authz-signing-keys', namespace: 'mesh' },
      data: { 'admin-token': Buffer.from('operator-chosen-token').toString('base64') },
    });
    const result = await runHook(url, { 'admin-token': 'random-48', 'csrf-secret': 'random-48' });
    expect(result).toEqual({ code: 0, output: expect.stringContaining('added csrf-secret') });
    const data = api.secrets.get('mesh/trellis-authz-signing-keys')!.data;
    expect(decode(data['admin-token']!)).toBe('operator-chosen-token');
    expect(Object.keys(data).sort()).toEqual(['admin-token', 'csrf-secret']);
  });

  it('fails naming the API answer when it may not read Secrets', async () => {
    api.deny = true;
    const result = await runHook(url, { 'csrf-secret': 'random-48' });
    expect(result.code).toBe(1);
    expect(result.output).toContain('reading Secret mesh/trellis-authz-signing-keys: HTTP 403 Forbidden secrets is forbidden');
  });

  it('refuses an unknown generator before calling the API', async () => {
    const result = await runHook(url, { 'csrf-secret': 'random-12' });
    expect(result.code).toBe(1);
    expect(result.output).toContain('SECRET_KEYS.csrf-secret: unknown generator random-12');
    expect(api.calls).toEqual([]);
  });
});
