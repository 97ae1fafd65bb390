// `trellis bootstrap`, the one way sidecars get their bootstrap — ExecStartPre= of
// trellis-envoy@.service on VMs and the Helm sidecar's init container — run in-process
// against a local HTTP server that serves bootstraps rendered by the control plane's
// own renderer (with the xDS-token placeholder when the control plane wants a token)
// and answers POST /v1/token as authz does.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderBootstrap } from '../../../apps/control-plane/src/bootstrap';
// The CLI is an app without an import path; this test runs its program in-process
// (eslint.config.mjs lists it among the app entry points tools may import).
import { buildProgram } from '../../../apps/cli/src/program';
import type { Command } from 'commander';

interface Run {
  status: number;
  stderr: string;
  output: string;
}

describe('trellis bootstrap', () => {
  let server: Server;
  let baseUrl: string;
  let requireToken = false;
  /** Answers the bootstrap fetches get before the real one: a control plane that is late, or a service not declared yet. */
  let refusals: { status: number; title: string; detail: string }[] = [];
  const requests: URL[] = [];
  const tokenRequests: { authorization?: string; contentType?: string; body: string }[] = [];
  const AUTHZ_SECRET = 'orders-secret-0123456789';
  // sub orders, aud trellis-xds, iat/exp in 2100 (a token's exp is what the client renews by).
  const ISSUED_TOKEN =
    'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcmRlcnMiLCJhdWQiOiJ0cmVsbGlzLXhkcyIsImlhdCI6NDEwMjQ0NDgwMCwiZXhwIjo0MTAyNDQ1NzAwfQ.ZnJlc2g';
  let dir: string;

  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      const problem = (status: number, title: string, detail: string) =>
        res.writeHead(status, { 'content-type': 'application/problem+json' }).end(JSON.stringify({ title, detail }));
      if (req.method === 'POST' && url.pathname === '/v1/token') {
        let body = '';
        req.on('data', (chunk: Buffer) => (body += chunk.toString()));
        req.on('end', () => {
          tokenRequests.push({ authorization: req.headers.authorization, contentType: req.headers['content-type'], body });
          if (req.headers.authorization !== `Basic ${Buffer.from(`orders:${AUTHZ_SECRET}`).toString('base64')}`)
            return problem(401, 'Unauthenticated', 'unknown service credential');
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ token: ISSUED_TOKEN, tokenType: 'Bearer', expiresAt: '2100-01-01T00:15:00.000Z', expiresIn: 900 }));
        });
        return;
      }
      requests.push(url);
      const refusal = refusals.shift();
      if (refusal) return problem(refusal.status, refusal.title, refusal.detail);
      const service = url.pathname.split('/')[2]!;
      if (service !== 'orders') return problem(404, 'Unknown service', `service "${service}" is not registered`);
      if (url.searchParams.get('app_port') === '18000') return problem(400, 'Invalid parameter', 'app_port: port 18000 is taken');
      res.writeHead(200, { 'content-type': 'application/yaml' }).end(
        renderBootstrap({
          service,
          nodeId: url.searchParams.get('node') ?? '${NODE_ID}',
          appPort: Number(url.searchParams.get('app_port') ?? 8080),
          appProtocol: 'http',
          xds: [{ host: 'control-plane.internal', port: 18000 }],
          ...(requireToken ? { xdsToken: '${TRELLIS_XDS_TOKEN}' } : {}),
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'trellis-bootstrap-'));
    requests.length = 0;
    tokenRequests.length = 0;
    refusals = [];
    requireToken = false;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** `trellis bootstrap SERVICE --out dir/bootstrap.yaml` with only `env` set (no TRELLIS_* from this process). */
  async function run(service: string, env: Record<string, string>, extraArgs: string[] = []): Promise<Run> {
    const output = join(dir, 'bootstrap.yaml');
    const saved = { ...process.env };
    for (const name of Object.keys(process.env))
      if (name.startsWith('TRELLIS_') || name === 'CREDENTIALS_DIRECTORY') delete process.env[name];
    Object.assign(process.env, {
      TRELLIS_CONFIG: join(dir, 'no-config.yaml'),
      TRELLIS_CONTROL_PLANE_URL: baseUrl,
      TRELLIS_APP_PORT: '9000',
      ...env,
    });
    if (env['TRELLIS_APP_PORT'] === '') delete process.env['TRELLIS_APP_PORT'];
    let stderr = '';
    const write = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr += chunk.toString();
      return true;
    });
    const program = buildProgram();
    const quiet = (cmd: Command): void => {
      cmd.exitOverride().configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => undefined });
      cmd.commands.forEach(quiet);
    };
    quiet(program);
    let status = 0;
    try {
      await program.parseAsync(['bootstrap', service, '--out', output, ...extraArgs], { from: 'user' });
    } catch (err) {
      // A CliError (what main.ts prints and exits with) or a CommanderError (already printed).
      status = (err as { exitCode?: number }).exitCode ?? 1;
      if ((err as Error).name === 'CliError') stderr += `trellis: ${(err as Error).message}\n`;
    } finally {
      write.mockRestore();
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    }
    return { status, stderr, output };
  }

  const credentialsWith = (files: Record<string, string>) => {
    const credentials = join(dir, 'credentials');
    mkdirSync(credentials);
    for (const [name, content] of Object.entries(files)) writeFileSync(join(credentials, name), content);
    return credentials;
  };

  it('writes the bootstrap for the node and app port it is given', async () => {
    const result = await run('orders', { TRELLIS_NODE_ID: 'orders.vm-1', TRELLIS_APP_PORT: '9000' });
    expect(result.status).toBe(0);
    expect(requests.map((u) => `${u.pathname}?${u.searchParams}`)).toEqual([
      '/bootstrap/orders?node=orders.vm-1&app_port=9000&format=yaml',
    ]);
    const text = readFileSync(result.output, 'utf8');
    expect(text).toMatch(/id: orders\.vm-1/);
    expect(text).toMatch(/port_value: 9000/);
    expect(result.stderr).toContain(`orders bootstrap written to ${result.output}`);
  });

  it('refuses to start without the application port, and passes where this host keeps its xDS TLS files', async () => {
    const missing = await run('orders', { TRELLIS_NODE_ID: 'orders.vm-1', TRELLIS_APP_PORT: '' });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/--app-port <port>' not specified/);
    expect(requests).toEqual([]);

    const tls = await run('orders', {
      TRELLIS_NODE_ID: 'orders.vm-1',
      TRELLIS_XDS_CA_FILE: '/etc/trellis/xds/ca.crt',
      TRELLIS_XDS_CERT_FILE: '/run/credentials/orders.crt',
      TRELLIS_XDS_KEY_FILE: '/run/credentials/orders.key',
    });
    expect(tls.status).toBe(0);
    expect(Object.fromEntries(requests[0]!.searchParams)).toMatchObject({
      ca_file: '/etc/trellis/xds/ca.crt',
      cert_file: '/run/credentials/orders.crt',
      key_file: '/run/credentials/orders.key',
    });
  });

  it("passes the sidecar's own admin and outbound ports from its unit's environment file", async () => {
    const result = await run('orders', {
      TRELLIS_NODE_ID: 'orders.vm-1',
      TRELLIS_ENVOY_ADMIN_PORT: '15100',
      TRELLIS_OUTBOUND_PORT: '15101',
    });
    expect(result.status).toBe(0);
    expect(Object.fromEntries(requests[0]!.searchParams)).toMatchObject({ admin_port: '15100', outbound_port: '15101' });
    const bad = await run('orders', { TRELLIS_NODE_ID: 'orders.vm-1', TRELLIS_OUTBOUND_PORT: '70000' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--outbound-port (TRELLIS_OUTBOUND_PORT) must be a port from 1 to 65535, got "70000"');
  });

  it('fills in the xDS token from the xds-token credential when the control plane wants one', async () => {
    requireToken = true;
    const credentials = credentialsWith({ 'xds-token': 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcmRlcnMifQ.c2ln\n' });
    const result = await run('orders', { TRELLIS_NODE_ID: 'orders.vm-1', CREDENTIALS_DIRECTORY: credentials });
    expect(result.status).toBe(0);
    const text = readFileSync(result.output, 'utf8');
    expect(text).toContain('Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcmRlcnMifQ.c2ln');
    expect(text).not.toContain('${TRELLIS_XDS_TOKEN}');
  });

  it('fails, saying why and without retrying, when a token is needed and none is loaded', async () => {
    requireToken = true;
    const result = await run('orders', { TRELLIS_NODE_ID: 'orders.vm-1' });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/requires an xDS token, and no authz URL and service secret are configured and no static xDS token/);
    expect(requests).toHaveLength(1);
    expect(existsSync(result.output)).toBe(false);
  });

  describe('with authz configured (TRELLIS_AUTHZ_URL + the service-secret credential)', () => {
    beforeEach(() => (requireToken = true));

    it('fetches a fresh xDS token as the service, preferring it to a static one', async () => {
      const credentials = credentialsWith({ 'service-secret': `${AUTHZ_SECRET}\n`, 'xds-token': 'static.static.static\n' });
      const result = await run('orders', {
        TRELLIS_NODE_ID: 'orders.vm-1',
        CREDENTIALS_DIRECTORY: credentials,
        TRELLIS_AUTHZ_URL: baseUrl,
      });
      expect(result.status).toBe(0);
      expect(tokenRequests).toEqual([
        {
          authorization: `Basic ${Buffer.from(`orders:${AUTHZ_SECRET}`).toString('base64')}`,
          contentType: 'application/json',
          body: '{"audience":"trellis-xds"}',
        },
      ]);
      const text = readFileSync(result.output, 'utf8');
      expect(text).toContain(`Bearer ${ISSUED_TOKEN}`);
      expect(text).not.toContain('static.static.static');
    });

    it('falls back to the static xds-token when authz refuses', async () => {
      const credentials = credentialsWith({ 'service-secret': 'not-the-secret-000000\n', 'xds-token': 'static.static.static\n' });
      const result = await run('orders', {
        TRELLIS_NODE_ID: 'orders.vm-1',
        CREDENTIALS_DIRECTORY: credentials,
        TRELLIS_AUTHZ_URL: baseUrl,
      });
      expect(result.status).toBe(0);
      expect(tokenRequests).toHaveLength(1);
      expect(readFileSync(result.output, 'utf8')).toContain('Bearer static.static.static');
    });

    it("fails, naming authz's refusal, when authz refuses and no static token is loaded", async () => {
      const credentials = credentialsWith({ 'service-secret': 'not-the-secret-000000\n' });
      const result = await run('orders', {
        TRELLIS_NODE_ID: 'orders.vm-1',
        CREDENTIALS_DIRECTORY: credentials,
        TRELLIS_AUTHZ_URL: baseUrl,
      });
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(
        /authz issued none \(POST \/v1\/token: authz refused a token for orders→trellis-xds: 401 .*unknown service credential/,
      );
      expect(existsSync(result.output)).toBe(false);
    });

    it('says so when TRELLIS_AUTHZ_URL is set but the service secret is not loaded', async () => {
      const credentials = credentialsWith({ 'xds-token': 'static.static.static\n' });
      const result = await run('orders', {
        TRELLIS_NODE_ID: 'orders.vm-1',
        CREDENTIALS_DIRECTORY: credentials,
        TRELLIS_AUTHZ_URL: baseUrl,
      });
      expect(result.status).toBe(0);
      expect(result.stderr).toMatch(/--authz is set but no service secret is readable/);
      expect(tokenRequests).toEqual([]);
    });
  });

  describe('retries', () => {
    it('waits, with backoff, for a service that is not declared yet (404) and a control plane not ready yet (503)', async () => {
      refusals = [
        { status: 503, title: 'Not ready', detail: 'the mesh model is not loaded yet' },
        { status: 404, title: 'Unknown service', detail: 'service "orders" is not registered' },
        { status: 404, title: 'Unknown service', detail: 'service "orders" is not registered' },
      ];
      const result = await run('orders', { TRELLIS_NODE_ID: 'orders.vm-1' }, ['--retry-for', '60s']);
      expect(result.status).toBe(0);
      expect(requests).toHaveLength(4);
      expect(result.stderr.match(/retrying in \d+\.\d s/g)).toHaveLength(3);
      expect(result.stderr).toContain('404 Unknown service: service "orders" is not registered; retrying');
      expect(readFileSync(result.output, 'utf8')).toMatch(/id: orders\.vm-1/);
    });

    it("gives up after --retry-for with the control plane's explanation", async () => {
      const result = await run('payments', { TRELLIS_NODE_ID: 'payments.vm-1' }, ['--retry-for', '2s']);
      expect(result.status).toBe(1);
      expect(requests.length).toBeGreaterThan(1);
      expect(result.stderr).toMatch(/404 Unknown service: service "payments" is not registered \(gave up after \d+ attempts\)/);
      expect(existsSync(result.output)).toBe(false);
    });

    it('does not retry what retrying cannot fix (400) or when told not to (--retry-for 0)', async () => {
      const bad = await run('orders', { TRELLIS_NODE_ID: 'orders.vm-1', TRELLIS_APP_PORT: '18000' });
      expect(bad.status).toBe(1);
      expect(bad.stderr).toContain('400 Invalid parameter: app_port: port 18000 is taken');
      expect(requests).toHaveLength(1);

      requests.length = 0;
      const once = await run('payments', { TRELLIS_NODE_ID: 'payments.vm-1', TRELLIS_BOOTSTRAP_RETRY_FOR: '0' });
      expect(once.status).toBe(1);
      expect(requests).toHaveLength(1);
      expect(once.stderr).not.toContain('gave up');
    });

    it('waits for a control plane that is not listening yet', async () => {
      const late = createServer((_req, res) => res.writeHead(503).end());
      await new Promise<void>((resolve) => late.listen(0, '127.0.0.1', resolve));
      const port = (late.address() as AddressInfo).port;
      await new Promise((resolve) => late.close(resolve));
      // Nothing listens on `port` now; the same control plane answers there after a few refusals.
      const second = createServer(server.listeners('request')[0] as Parameters<typeof createServer>[0]);
      const timer = setTimeout(() => second.listen(port, '127.0.0.1'), 1500);
      try {
        const result = await run('orders', { TRELLIS_NODE_ID: 'orders.vm-1', TRELLIS_CONTROL_PLANE_URL: `http://127.0.0.1:${port}` });
        expect(result.status).toBe(0);
        expect(result.stderr).toMatch(/ECONNREFUSED; retrying/);
      } finally {
        clearTimeout(timer);
        await new Promise((resolve) => second.close(resolve));
      }
    });
  });

  describe('as the trellis-sidecar init container', () => {
    // With authzSecret the init container obtains the workload certificate from the mesh CA first and asks
    // authz's mTLS port for the token: apps/cli/test/bootstrap-xds-token.test.ts runs that against the real authz.
    const POD = 'orders-7d9f-abcde';
    /** The chart's env without authzSecret (helm.test.ts checks it renders this) and its Secret mounted as a file. */
    const runInit = (secrets: { xdsToken?: string }) => {
      const credentials = credentialsWith(secrets.xdsToken !== undefined ? { 'xds-token': secrets.xdsToken } : {});
      return run('orders', {
        TRELLIS_APP_PORT: '8080',
        TRELLIS_NODE_ID: POD,
        CREDENTIALS_DIRECTORY: credentials,
      });
    };
    beforeEach(() => (requireToken = true));

    it('uses xdsTokenSecret alone, without asking authz, named after the pod', async () => {
      const result = await runInit({ xdsToken: 'aaa.bbb.ccc\n' });
      expect(result.status).toBe(0);
      expect(tokenRequests).toEqual([]);
      expect(requests.map((u) => u.searchParams.get('node'))).toEqual([POD]);
      const text = readFileSync(result.output, 'utf8');
      expect(text).toMatch(/id: orders-7d9f-abcde/);
      expect(text).toContain('Bearer aaa.bbb.ccc');
    });

    it('needs no credentials when the control plane admits insecure clients', async () => {
      requireToken = false;
      const result = await runInit({});
      expect(result.status).toBe(0);
      expect(readFileSync(result.output, 'utf8')).not.toContain('TRELLIS_XDS_TOKEN');
    });
  });
});
