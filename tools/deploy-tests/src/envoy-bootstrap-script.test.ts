// deploy/systemd/trellis-envoy-bootstrap, run with the real curl and sh against a
// local HTTP server that serves bootstraps rendered by the control plane's own
// renderer (with the xDS-token placeholder when the control plane wants a token).
// The same script is the Helm sidecar's init container: it runs here configured as
// the chart configures it (helm.test.ts checks the chart renders that configuration).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderBootstrap } from '../../../apps/control-plane/src/bootstrap';
import { WORKSPACE_ROOT } from './workspace';

const SCRIPT = join(WORKSPACE_ROOT, 'deploy/systemd/trellis-envoy-bootstrap');

describe('trellis-envoy-bootstrap', () => {
  let server: Server;
  let baseUrl: string;
  let requireToken = false;
  const requests: string[] = [];
  const tokenRequests: { authorization?: string; contentType?: string; body: string }[] = [];
  const AUTHZ_SECRET = 'orders-secret-0123456789';
  const ISSUED_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcmRlcnMiLCJhdWQiOiJ0cmVsbGlzLXhkcyJ9.ZnJlc2g';
  let dir: string;

  beforeAll(async () => {
    for (const binary of ['curl', 'sh', 'sed', 'grep']) {
      if (spawnSync('sh', ['-c', `command -v ${binary}`]).status !== 0)
        throw new Error(`${binary} is missing: install the Debian package "${binary === 'curl' ? 'curl' : 'coreutils'}"`);
    }
    server = createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      if (req.method === 'POST' && url.pathname === '/v1/token') {
        // authz's token endpoint, as far as the script sees it.
        let body = '';
        req.on('data', (chunk: Buffer) => (body += chunk.toString()));
        req.on('end', () => {
          tokenRequests.push({ authorization: req.headers.authorization, contentType: req.headers['content-type'], body });
          if (req.headers.authorization !== `Basic ${Buffer.from(`orders:${AUTHZ_SECRET}`).toString('base64')}`) {
            res.writeHead(401, { 'content-type': 'application/problem+json' }).end(JSON.stringify({ title: 'Unauthenticated' }));
            return;
          }
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ token: ISSUED_TOKEN, tokenType: 'Bearer', expiresAt: '2026-01-01T00:15:00.000Z', expiresIn: 900 }));
        });
        return;
      }
      requests.push(req.url!);
      const service = url.pathname.split('/')[2]!;
      if (service !== 'orders') {
        res
          .writeHead(404, { 'content-type': 'application/problem+json' })
          .end(JSON.stringify({ title: 'Unknown service', detail: `service "${service}" is not registered` }));
        return;
      }
      const body = renderBootstrap({
        service,
        nodeId: url.searchParams.get('node') ?? '${NODE_ID}',
        appPort: Number(url.searchParams.get('app_port') ?? 8080),
        appProtocol: 'http',
        xds: { host: 'control-plane.internal', port: 18000 },
        ...(requireToken ? { xdsToken: '${TRELLIS_XDS_TOKEN}' } : {}),
      });
      res.writeHead(200, { 'content-type': 'application/yaml' }).end(body);
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
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  // spawnSync would block the event loop the fake control plane answers on: run it async.
  function run(service: string, env: Record<string, string>) {
    return runShell([SCRIPT, service, join(dir, 'bootstrap.yaml')], env);
  }

  /** Runs `sh args…`; both scripts write dir/bootstrap.yaml. */
  function runShell(args: string[], env: Record<string, string>) {
    const output = join(dir, 'bootstrap.yaml');
    return new Promise<{ status: number | null; stderr: string; output: string }>((resolve) => {
      const child = spawn('sh', args, {
        env: { PATH: process.env['PATH']!, TRELLIS_CONTROL_PLANE_URL: baseUrl, TRELLIS_APP_PORT: '9000', ...env },
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('close', (status) => resolve({ status, stderr, output }));
    });
  }

  it('writes the bootstrap for the node and app port it is given', async () => {
    const result = await run('orders', { TRELLIS_NODE_ID: 'orders.vm-1', TRELLIS_APP_PORT: '9000' });
    expect(result.status).toBe(0);
    expect(requests).toEqual(['/bootstrap/orders?node=orders.vm-1&app_port=9000']);
    const text = readFileSync(result.output, 'utf8');
    expect(text).toMatch(/id: orders\.vm-1/);
    expect(text).toMatch(/port_value: 9000/);
    expect(existsSync(`${result.output}.tmp`)).toBe(false);
  });

  it('refuses to start without the application port, and passes where this host keeps its xDS TLS files', async () => {
    const missing = await run('orders', { TRELLIS_NODE_ID: 'orders.vm-1', TRELLIS_APP_PORT: '' });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/TRELLIS_APP_PORT is not set/);
    expect(requests).toEqual([]);

    const tls = await run('orders', {
      TRELLIS_NODE_ID: 'orders.vm-1',
      TRELLIS_XDS_CA_FILE: '/etc/trellis/xds/ca.crt',
      TRELLIS_XDS_CERT_FILE: '/run/credentials/orders.crt',
      TRELLIS_XDS_KEY_FILE: '/run/credentials/orders.key',
    });
    expect(tls.status).toBe(0);
    expect(requests).toEqual([
      '/bootstrap/orders?node=orders.vm-1&app_port=9000&ca_file=/etc/trellis/xds/ca.crt&cert_file=/run/credentials/orders.crt&key_file=/run/credentials/orders.key',
    ]);
  });

  it('fills in the xDS token from the xds-token credential when the control plane wants one', async () => {
    requireToken = true;
    try {
      const credentials = join(dir, 'credentials');
      mkdirSync(credentials);
      writeFileSync(join(credentials, 'xds-token'), 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcmRlcnMifQ.c2ln\n');
      const result = await run('orders', { TRELLIS_NODE_ID: 'orders.vm-1', CREDENTIALS_DIRECTORY: credentials });
      expect(result.status).toBe(0);
      const text = readFileSync(result.output, 'utf8');
      expect(text).toContain('Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcmRlcnMifQ.c2ln');
      expect(text).not.toContain('${TRELLIS_XDS_TOKEN}');
    } finally {
      requireToken = false;
    }
  });

  it('fails, saying why, when a token is needed and none is loaded', async () => {
    requireToken = true;
    try {
      const result = await run('orders', { TRELLIS_NODE_ID: 'orders.vm-1' });
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/requires an xDS token, and neither authz .* issued one nor is an xds-token credential loaded/);
      expect(existsSync(result.output)).toBe(false);
    } finally {
      requireToken = false;
    }
  });

  describe('with authz configured (TRELLIS_AUTHZ_URL + the authz-secret credential)', () => {
    const credentialsWith = (files: Record<string, string>) => {
      const credentials = join(dir, 'credentials');
      mkdirSync(credentials);
      for (const [name, content] of Object.entries(files)) writeFileSync(join(credentials, name), content);
      return credentials;
    };
    beforeEach(() => (requireToken = true));
    afterEach(() => (requireToken = false));

    it('fetches a fresh xDS token as the service, preferring it to a static one', async () => {
      const credentials = credentialsWith({ 'authz-secret': `${AUTHZ_SECRET}\n`, 'xds-token': 'static.static.static\n' });
      const result = await run('orders', {
        TRELLIS_NODE_ID: 'orders.vm-1',
        CREDENTIALS_DIRECTORY: credentials,
        TRELLIS_AUTHZ_URL: baseUrl,
      });
      expect(result.stderr).toBe('');
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
      expect(existsSync(`${result.output}.tmp.token`)).toBe(false);
    });

    it('falls back to the static xds-token, saying why, when authz refuses', async () => {
      const credentials = credentialsWith({ 'authz-secret': 'not-the-secret-000000\n', 'xds-token': 'static.static.static\n' });
      const result = await run('orders', {
        TRELLIS_NODE_ID: 'orders.vm-1',
        CREDENTIALS_DIRECTORY: credentials,
        TRELLIS_AUTHZ_URL: baseUrl,
      });
      expect(result.status).toBe(0);
      expect(result.stderr).toMatch(/authz at .* issued no xDS token for orders; trying the xds-token credential/);
      expect(readFileSync(result.output, 'utf8')).toContain('Bearer static.static.static');
    });

    it('fails, naming both ways, when authz refuses and no static token is loaded', async () => {
      const credentials = credentialsWith({ 'authz-secret': 'not-the-secret-000000\n' });
      const result = await run('orders', {
        TRELLIS_NODE_ID: 'orders.vm-1',
        CREDENTIALS_DIRECTORY: credentials,
        TRELLIS_AUTHZ_URL: baseUrl,
      });
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/LoadCredential=authz-secret:.*LoadCredential=xds-token:/);
      expect(existsSync(result.output)).toBe(false);
    });

    it('says so when TRELLIS_AUTHZ_URL is set but the authz-secret credential is not loaded', async () => {
      const credentials = credentialsWith({ 'xds-token': 'static.static.static\n' });
      const result = await run('orders', {
        TRELLIS_NODE_ID: 'orders.vm-1',
        CREDENTIALS_DIRECTORY: credentials,
        TRELLIS_AUTHZ_URL: baseUrl,
      });
      expect(result.status).toBe(0);
      expect(result.stderr).toMatch(/TRELLIS_AUTHZ_URL is set but no authz-secret credential is loaded/);
      expect(tokenRequests).toEqual([]);
    });
  });

  it("fails with the control plane's explanation for an unknown service", async () => {
    const result = await run('payments', { TRELLIS_NODE_ID: 'payments.vm-1' });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('service \\"payments\\" is not registered');
    expect(existsSync(result.output)).toBe(false);
  });

  describe('as the trellis-sidecar init container', () => {
    const POD = 'orders-7d9f-abcde';
    /** The chart's env and its Secrets mounted as $CREDENTIALS_DIRECTORY files (authz-secret, xds-token). */
    const runInit = (secrets: { authzSecret?: string; xdsToken?: string }, hints: Record<string, string>) => {
      const credentials = join(dir, 'credentials');
      mkdirSync(credentials);
      if (secrets.authzSecret !== undefined) writeFileSync(join(credentials, 'authz-secret'), secrets.authzSecret);
      if (secrets.xdsToken !== undefined) writeFileSync(join(credentials, 'xds-token'), secrets.xdsToken);
      return run('orders', {
        TRELLIS_APP_PORT: '8080',
        TRELLIS_NODE_ID: POD,
        ...(secrets.authzSecret !== undefined ? { TRELLIS_AUTHZ_URL: baseUrl } : {}),
        CREDENTIALS_DIRECTORY: credentials,
        ...hints,
      });
    };
    const UNSET_HINTS = {
      TRELLIS_AUTHZ_SECRET_HINT: "set authzSecret: a Secret holding the service's authz token-endpoint secret",
      TRELLIS_XDS_TOKEN_HINT: 'set xdsTokenSecret: a Secret whose key token holds an xDS token',
    };
    beforeEach(() => (requireToken = true));
    afterEach(() => (requireToken = false));

    it("fetches the pod's bootstrap, named after the pod, with a fresh token from authz", async () => {
      const result = await runInit(
        { authzSecret: AUTHZ_SECRET },
        { ...UNSET_HINTS, TRELLIS_AUTHZ_SECRET_HINT: 'authzSecret: Secret orders-authz, key secret' },
      );
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      expect(requests).toEqual([`/bootstrap/orders?node=${POD}&app_port=8080`]);
      expect(tokenRequests.map((r) => r.authorization)).toEqual([`Basic ${Buffer.from(`orders:${AUTHZ_SECRET}`).toString('base64')}`]);
      const text = readFileSync(result.output, 'utf8');
      expect(text).toMatch(/id: orders-7d9f-abcde/);
      expect(text).toContain(`Bearer ${ISSUED_TOKEN}`);
    });

    it('falls back to xdsTokenSecret, saying why, when authz refuses', async () => {
      const result = await runInit(
        { authzSecret: 'not-the-secret-000000', xdsToken: 'aaa.bbb.ccc' },
        {
          TRELLIS_AUTHZ_SECRET_HINT: 'authzSecret: Secret orders-authz, key secret',
          TRELLIS_XDS_TOKEN_HINT: 'xdsTokenSecret: Secret orders-xds, key token',
        },
      );
      expect(result.status).toBe(0);
      expect(result.stderr).toMatch(/authz at .* issued no xDS token for orders; trying the xds-token credential/);
      expect(readFileSync(result.output, 'utf8')).toContain('Bearer aaa.bbb.ccc');
    });

    it('uses xdsTokenSecret alone, without asking authz', async () => {
      const result = await runInit(
        { xdsToken: 'aaa.bbb.ccc\n' },
        { ...UNSET_HINTS, TRELLIS_XDS_TOKEN_HINT: 'xdsTokenSecret: Secret orders-xds, key token' },
      );
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      expect(tokenRequests).toEqual([]);
      expect(readFileSync(result.output, 'utf8')).toContain('Bearer aaa.bbb.ccc');
    });

    it('stops, naming both chart values, when neither is configured', async () => {
      const result = await runInit({}, UNSET_HINTS);
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(
        "requires an xDS token, and neither authz (TRELLIS_AUTHZ_URL + set authzSecret: a Secret holding the service's authz token-endpoint secret) issued one nor is an xds-token credential loaded (set xdsTokenSecret: a Secret whose key token holds an xDS token)",
      );
      expect(result.stderr).not.toContain('LoadCredential');
      expect(existsSync(result.output)).toBe(false);
    });

    it('needs no credentials when the control plane admits insecure clients', async () => {
      requireToken = false;
      const result = await runInit({}, UNSET_HINTS);
      expect(result.status).toBe(0);
      expect(readFileSync(result.output, 'utf8')).not.toContain('TRELLIS_XDS_TOKEN');
    });
  });
});
