// The registry as the registry benchmarks run it: in its own process, against the
// bench's etcd, with a fixed admin token and reads open, answering once ready. With
// a team JWKS URL (startBenchTeamIdp) it also takes team JWTs, as it does in production.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { connectEtcd, KeyLayout } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { startRegistry } from '../../../apps/registry/src/registry';

export const BENCH_ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';
const BENCH_AUDIENCE = 'trellis-registry';
const BENCH_TEAM_ISSUER = 'https://idp.bench.invalid/';

export async function startBenchRegistry(etcdEndpoint: string, etcdPrefix: string, teamJwksUrl?: string) {
  const etcd = connectEtcd({ endpoints: [etcdEndpoint] });
  const registry = await startRegistry({
    config: {
      TRELLIS_HOST: '127.0.0.1',
      TRELLIS_HTTP_PORT: 0,
      TRELLIS_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
      TRELLIS_AUTH_JWKS_URL: teamJwksUrl,
      TRELLIS_AUTH_ISSUER: teamJwksUrl ? BENCH_TEAM_ISSUER : undefined,
      TRELLIS_AUTH_AUDIENCE: BENCH_AUDIENCE,
      TRELLIS_SERVICE_CREDENTIALS: undefined,
      TRELLIS_CSRF_SECRET: 'bench-csrf-secret-0123456789abcdef0123456789',
      TRELLIS_READS_REQUIRE_AUTH: false,
      TRELLIS_MAX_BODY_BYTES: 64 * 1024,
      TRELLIS_SECURE_COOKIES: false,
    },
    etcd,
    layout: new KeyLayout(etcdPrefix),
    logger: createLogger('registry', 'warn'),
  });
  // Readiness is evaluated on request (no push): ask until etcd answers and the view holds its snapshot.
  while (!(await registry.health.recheck())) await new Promise((resolve) => setTimeout(resolve, 100));
  return { registry, etcd };
}

/** An identity provider for the bench: an RS256 key, its JWKS served over HTTP, and team tokens it signs. */
export async function startBenchTeamIdp(): Promise<{ jwksUrl: string; teamToken(team: string): Promise<string>; close(): void }> {
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'bench-1', alg: 'RS256', use: 'sig' }] });
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(jwks));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    jwksUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`,
    teamToken: (team) =>
      new SignJWT({ team })
        .setProtectedHeader({ alg: 'RS256', kid: 'bench-1' })
        .setIssuer(BENCH_TEAM_ISSUER)
        .setAudience(BENCH_AUDIENCE)
        .setSubject(`ci-${team}`)
        .setIssuedAt()
        .setExpirationTime('2h')
        .sign(privateKey),
    close: () => server.close(),
  };
}
