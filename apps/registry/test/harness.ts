// A real registry for integration tests: a real etcd (one per test file), the
// registry started as main.ts starts it (startRegistry) on 127.0.0.1:0, and a
// real JWKS endpoint serving the key that signs the team tokens the tests use.
import type { KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { KeyLayout, MeshStore, ServiceCredentials, type EtcdClient } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { startEtcd } from '@trellis/testing';
import type { TestEtcd } from '@trellis/testing';
import { startRegistry as startRegistryApp } from '../src/registry';
import type { ServiceSpecInput } from '@trellis/mesh-schema';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';
export const AUDIENCE = 'trellis-registry';
export const ISSUER = 'https://idp.test';
/** Instance-agent credentials the test registry accepts (TRELLIS_SERVICE_CREDENTIALS). */
export const SERVICE_SECRETS: Readonly<Record<string, string>> = {
  orders: 'orders-agent-secret-0123456789',
  billing: 'billing-agent-secret-0123456789',
};

/** `Authorization` header of a service credential. */
export function serviceCredential(service: string, secret = SERVICE_SECRETS[service]!): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${service}:${secret}`).toString('base64')}` };
}

export interface TestRegistry {
  url: string;
  etcd: TestEtcd;
  client: EtcdClient;
  layout: KeyLayout;
  store: MeshStore;
  /** The JWKS the team tokens verify against (for a second replica). */
  jwksUrl: string;
  /** A team JWT signed by the key the JWKS endpoint serves. */
  teamToken(
    team: string,
    opts?: {
      expiresIn?: string;
      audience?: string;
      /** `iat` (seconds) */ issuedAt?: number;
      /** `exp` (seconds); null: none */ expiresAt?: number | null;
      /** Another key the JWKS serves (serveTeamKey), in place of the suite's own. */
      signWith?: { kid: string; privateKey: KeyObject };
    },
  ): Promise<string>;
  /** Makes the JWKS endpoint serve this public key too (an attacker's, or a weak one). */
  serveTeamKey(jwk: Record<string, unknown>): void;
  /** Every key under this suite's prefix with its value: "etcd unchanged" means this is equal before and after. */
  snapshot(): Promise<Record<string, string>>;
  /** What SIGHUP does in production: reads the followed files now. */
  reloadFiles(): Promise<void>;
  close(): Promise<void>;
}

export async function startRegistry(
  opts: {
    readsRequireAuth?: boolean;
    maxBodyBytes?: number;
    headersTimeoutMs?: number;
    requestTimeoutMs?: number;
    /** TRELLIS_SERVICE_CREDENTIALS, read (and followed) as in production, in place of SERVICE_SECRETS. */
    serviceCredentialsPath?: string;
    serviceCredentialsReloadSeconds?: number;
    /** TRELLIS_ADMIN_TOKEN_FILE in place of TRELLIS_ADMIN_TOKEN (followed on the same poll). */
    adminTokenFile?: string;
    /** TRELLIS_CSRF_SECRET_FILE in place of TRELLIS_CSRF_SECRET. */
    csrfSecretFile?: string;
    /** The client certificate main.ts hands over from TRELLIS_ETCD_CERT_FILE (the test etcd itself runs without TLS). */
    etcdClientCert?: Buffer;
  } = {},
): Promise<TestRegistry> {
  const etcd = await startEtcd();
  const client = etcd.client();
  const layout = new KeyLayout(etcd.prefix);
  const store = new MeshStore(client, layout);

  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const jwks: Record<string, unknown>[] = [{ ...(await exportJWK(publicKey)), kid: 'test-key', alg: 'RS256', use: 'sig' }];
  const jwksServer = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: jwks }));
  });
  jwksServer.listen(0, '127.0.0.1');
  await once(jwksServer, 'listening');
  const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;

  const registry = await startRegistryApp({
    config: {
      TRELLIS_HOST: '127.0.0.1',
      TRELLIS_HTTP_PORT: 0,
      TRELLIS_ADMIN_TOKEN: opts.adminTokenFile ? undefined : ADMIN_TOKEN,
      TRELLIS_ADMIN_TOKEN_FILE: opts.adminTokenFile,
      TRELLIS_AUTH_JWKS_URL: jwksUrl,
      TRELLIS_AUTH_ISSUER: ISSUER,
      TRELLIS_AUTH_AUDIENCE: AUDIENCE,
      TRELLIS_SERVICE_CREDENTIALS: opts.serviceCredentialsPath,
      TRELLIS_SERVICE_CREDENTIALS_RELOAD_SECONDS: opts.serviceCredentialsReloadSeconds,
      TRELLIS_CSRF_SECRET: opts.csrfSecretFile ? undefined : 'test-csrf-secret-0123456789abcdef0123456789',
      TRELLIS_CSRF_SECRET_FILE: opts.csrfSecretFile,
      TRELLIS_READS_REQUIRE_AUTH: opts.readsRequireAuth ?? false,
      TRELLIS_MAX_BODY_BYTES: opts.maxBodyBytes ?? 64 * 1024,
      TRELLIS_SECURE_COOKIES: false,
      TRELLIS_HTTP_HEADERS_TIMEOUT_MS: opts.headersTimeoutMs,
      TRELLIS_HTTP_REQUEST_TIMEOUT_MS: opts.requestTimeoutMs,
    },
    etcd: client,
    etcdClientCert: opts.etcdClientCert,
    layout,
    logger: createLogger('registry', process.env['TRELLIS_TEST_LOG_LEVEL'] ?? 'silent'),
    ...(opts.serviceCredentialsPath ? {} : { serviceCredentials: ServiceCredentials.fromEntries(Object.entries(SERVICE_SECRETS)) }),
  });
  const url = `http://127.0.0.1:${registry.httpPort}`;

  return {
    url,
    etcd,
    client,
    layout,
    store,
    jwksUrl,
    teamToken: (team, tokenOpts = {}) => {
      const jwt = new SignJWT({ team })
        .setProtectedHeader({ alg: 'RS256', kid: tokenOpts.signWith?.kid ?? 'test-key' })
        .setSubject(`ci-${team}`)
        .setIssuer(ISSUER)
        .setAudience(tokenOpts.audience ?? AUDIENCE)
        .setIssuedAt(tokenOpts.issuedAt);
      const key = tokenOpts.signWith?.privateKey ?? privateKey;
      if (tokenOpts.expiresAt === null) return jwt.sign(key);
      return jwt.setExpirationTime(tokenOpts.expiresAt ?? tokenOpts.expiresIn ?? '5m').sign(key);
    },
    serveTeamKey: (jwk) => void jwks.push(jwk),
    async snapshot() {
      const all = await client.getAll().prefix(etcd.prefix).strings();
      return all;
    },
    reloadFiles: () => registry.reloadFiles(),
    async close() {
      await registry.close();
      await new Promise<void>((resolve) => jwksServer.close(() => resolve()));
      await etcd.close();
    },
  };
}

export function spec(name: string, overrides: Partial<ServiceSpecInput> = {}): ServiceSpecInput {
  return { name, team: 'payments', protocol: 'http', port: 8080, ...overrides };
}

export interface Reply {
  status: number;
  headers: Headers;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- tests inspect arbitrary JSON
  text: string;
}

/** fetch with JSON in and out; `token` becomes a bearer header. */
export async function call(
  base: string,
  method: string,
  path: string,
  opts: { token?: string; json?: unknown; body?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
  let body: string | undefined = opts.body;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + path, { method, headers, body, redirect: 'manual' });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}
