// `trellis hosts` run in-process against an HTTP server answering as the registry's
// /api/v1/hosts does (the registry's own tests cover the API; this covers the command).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Command } from 'commander';
import { buildProgram } from '../program';

describe('trellis hosts', () => {
  let server: Server;
  let registry: string;
  const seen: { method: string; url: string; authorization?: string; body: string }[] = [];
  const claims = [
    {
      host: 'shop.example.com',
      team: 'web',
      claimedBy: 'storefront',
      at: new Date(Date.now() - 3 * 3600_000).toISOString(),
      assigned: false,
    },
    { host: 'api.example.com', team: 'payments', claimedBy: 'admin', at: new Date().toISOString(), assigned: true },
  ];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization, body });
        const json = (status: number, value: unknown, type = 'application/json') =>
          res.writeHead(status, { 'content-type': type }).end(JSON.stringify(value));
        if (req.method === 'GET' && req.url === '/api/v1/hosts') return json(200, { items: claims });
        const assign = /^\/api\/v1\/hosts\/([^/]+)$/.exec(req.url!);
        if (req.method === 'PUT' && assign) {
          if (req.headers.authorization !== 'Bearer admin-token')
            return json(
              403,
              { title: 'Forbidden', status: 403, detail: 'assigning a host needs the admin token' },
              'application/problem+json',
            );
          const { team } = JSON.parse(body) as { team: string };
          return json(200, {
            host: decodeURIComponent(assign[1]!),
            team,
            claimedBy: 'admin',
            at: new Date().toISOString(),
            assigned: true,
          });
        }
        json(404, { title: 'Not found', status: 404 }, 'application/problem+json');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    registry = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));
  beforeEach(() => (seen.length = 0));

  async function trellis(...args: string[]): Promise<{ stdout: string; error?: Error }> {
    let stdout = '';
    const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout += chunk.toString();
      return true;
    });
    const program = buildProgram();
    const quiet = (cmd: Command): void => {
      cmd.exitOverride().configureOutput({ writeErr: () => undefined });
      cmd.commands.forEach(quiet);
    };
    quiet(program);
    try {
      await program.parseAsync(['--registry', registry, ...args], { from: 'user' });
      return { stdout };
    } catch (error) {
      return { stdout, error: error as Error };
    } finally {
      write.mockRestore();
    }
  }

  it('ls prints each host, its team and how it got it, sorted by host', async () => {
    const { stdout, error } = await trellis('hosts', 'ls');
    expect(error).toBeUndefined();
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^HOST\s+TEAM\s+HOW\s+BY\s+AGE$/);
    expect(lines[1]).toMatch(/^api\.example\.com\s+payments\s+assigned\s+admin\s+\d+s$/);
    expect(lines[2]).toMatch(/^shop\.example\.com\s+web\s+first claim\s+storefront\s+3h$/);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(['GET /api/v1/hosts']);
  });

  it('ls -o json prints the claims as the registry gave them', async () => {
    const { stdout } = await trellis('hosts', 'ls', '-o', 'json');
    expect(JSON.parse(stdout)).toEqual([claims[1], claims[0]]);
  });

  it('assign PUTs the team with the token, and a refusal names its reason', async () => {
    const done = await trellis('--token', 'admin-token', 'hosts', 'assign', 'shop.example.com', '--team', 'payments', '-o', 'json');
    expect(done.error).toBeUndefined();
    expect(seen[0]).toMatchObject({ method: 'PUT', url: '/api/v1/hosts/shop.example.com', authorization: 'Bearer admin-token' });
    expect(JSON.parse(seen[0]!.body)).toEqual({ team: 'payments' });
    expect(JSON.parse(done.stdout)).toMatchObject({ host: 'shop.example.com', team: 'payments', assigned: true });

    const refused = await trellis('--token', 'team-token', 'hosts', 'assign', 'shop.example.com', '--team', 'payments');
    expect(refused.error?.message).toBe('assign shop.example.com: 403 Forbidden: assigning a host needs the admin token');
  });

  it('assign without --team is refused before any request', async () => {
    const { error } = await trellis('hosts', 'assign', 'shop.example.com');
    expect(error?.message).toMatch(/--team <team>' not specified/);
    expect(seen).toEqual([]);
  });
});
