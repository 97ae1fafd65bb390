// Starts authz the way main.ts does, against the real etcd and Redis of a test,
// with a key directory of its own; and a typed ext_authz client to call it.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import type { AttributeContext } from '@trellis/envoy-types/envoy/service/auth/v3/attribute_context';
import { AuthorizationClient, type CheckRequest, type CheckResponse } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { createLogger } from '@trellis/runtime';
import { eventually, type TestEtcd, type TestRedis } from '@trellis/testing';
import { startAuthz, type Authz, type AuthzDeps } from '../../src/authz';
import { loadAuthzConfig } from '../../src/config';
import { checkWorkerScript } from './check-worker-script';

export class KeyDir {
  private constructor(readonly path: string) {}

  static async create(): Promise<KeyDir> {
    return new KeyDir(await mkdtemp(join(tmpdir(), 'authz-test-keys-')));
  }

  /** Writes a fresh RSA-2048 key as `<name>.pem`, as a rotated Secret would. */
  async addKey(name: string): Promise<void> {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(join(this.path, `${name}.pem`), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  }

  remove(): Promise<void> {
    return rm(this.path, { recursive: true, force: true });
  }
}

export interface StartedAuthz {
  authz: Authz;
  client: AuthorizationClient;
  check(request: DeepCheck): Promise<CheckResponse>;
  stop(): Promise<void>;
}

export interface DeepCheck {
  context?: Record<string, string>;
  headers?: Record<string, string>;
  host?: string;
  path?: string;
}

/**
 * Production's strict mTLS, with an operator's CA in `dir` (ca.crt, ca.key, bundle.crt) and the token
 * endpoint's callers file (`callers`): no insecure callers; certificates name services of `trustDomain`.
 */
export function operatorCaEnv(dir: string, trustDomain: string): Record<string, string> {
  return {
    TRELLIS_ALLOW_INSECURE_CALLERS: 'false',
    TRELLIS_TRUST_DOMAIN: trustDomain,
    TRELLIS_CA_CERT_FILE: join(dir, 'ca.crt'),
    TRELLIS_CA_KEY_FILE: join(dir, 'ca.key'),
    TRELLIS_CA_TRUST_BUNDLE_FILE: join(dir, 'bundle.crt'),
    TRELLIS_TOKEN_ENDPOINT_CREDENTIALS: join(dir, 'callers'),
  };
}

/** authz's environment for a test etcd and Redis: loopback, ephemeral ports, the given key directory. */
export function authzTestEnv(etcd: TestEtcd, redis: TestRedis, keys: KeyDir): Record<string, string> {
  return {
    TRELLIS_HOST: '127.0.0.1',
    TRELLIS_GRPC_PORT: '0',
    TRELLIS_HTTP_PORT: '0',
    TRELLIS_MTLS_PORT: '0',
    TRELLIS_ETCD_ENDPOINTS: etcd.endpoints.join(','),
    TRELLIS_ETCD_PREFIX: etcd.prefix,
    TRELLIS_REDIS_URL: redis.url,
    TRELLIS_SIGNING_KEYS_DIR: keys.path,
    // Production's 50 ms is a latency budget; on a loaded test machine a slow GET would read as a miss.
    TRELLIS_REDIS_COMMAND_TIMEOUT_MS: '5000',
    // These suites test what authz decides, over plaintext; who may ask at all (client certificates, production
    // defaults) is test/caller-identity.test.ts, which starts authz without this.
    TRELLIS_ALLOW_INSECURE_CALLERS: 'true',
  };
}

export async function startTestAuthz(
  etcd: TestEtcd,
  redis: TestRedis,
  keys: KeyDir,
  env: Record<string, string> = {},
  extra: Partial<Pick<AuthzDeps, 'edge' | 'checkWorker' | 'etcdClientCert'>> = {},
): Promise<StartedAuthz> {
  const config = loadAuthzConfig({ ...authzTestEnv(etcd, redis, keys), ...env });
  const etcdClient = etcd.client();
  const authz = await startAuthz({
    config,
    logger: createLogger('authz', process.env['TRELLIS_LOG_LEVEL'] ?? 'silent'),
    etcd: etcdClient,
    ...extra,
    checkWorker: config.TRELLIS_CHECK_WORKER ? { script: await checkWorkerScript(), ...extra.checkWorker } : undefined,
  });
  await authz.whenReady();
  const client = new AuthorizationClient(`127.0.0.1:${authz.grpcPort}`, credentials.createInsecure());
  return {
    authz,
    client,
    check: (request) =>
      new Promise((resolve, reject) => {
        client.check(checkRequest(request), (err, response) => (err ? reject(err) : resolve(response)));
      }),
    async stop() {
      client.close();
      await authz.close();
      etcdClient.close();
    },
  };
}

/** A CheckRequest as Envoy sends it, with only the parts authz reads filled in. */
export function checkRequest({ context = {}, headers = {}, host = 'orders', path = '/' }: DeepCheck): CheckRequest {
  const attributes: AttributeContext = {
    source: undefined,
    destination: undefined,
    request: {
      time: undefined,
      http: {
        id: '1',
        method: 'GET',
        headers,
        headerMap: undefined,
        path,
        host,
        scheme: 'http',
        query: '',
        fragment: '',
        size: '0',
        protocol: 'HTTP/1.1',
        body: '',
        rawBody: Buffer.alloc(0),
      },
    },
    contextExtensions: context,
    metadataContext: undefined,
    routeMetadataContext: undefined,
    tlsSession: undefined,
  };
  return { attributes };
}

export const outbound = (source: string, destination: string): DeepCheck => ({
  context: { 'trellis.source': source, 'trellis.destination': destination, 'trellis.direction': 'outbound' },
});

export function okHeaders(response: CheckResponse): Record<string, string> {
  if (response.httpResponse?.$case !== 'okResponse')
    throw new Error(`expected OK, got status ${response.status?.code}: ${response.status?.message}`);
  return Object.fromEntries(response.httpResponse.value.headers.map((h) => [h.header!.key, h.header!.value]));
}

export function deniedReason(response: CheckResponse): { code: number | undefined; http: number | undefined; reason: string | undefined } {
  if (response.httpResponse?.$case !== 'deniedResponse') throw new Error('expected a denial');
  const denied = response.httpResponse.value;
  return {
    code: response.status?.code,
    http: denied.status?.code,
    reason: denied.headers.find((h) => h.header?.key === 'x-trellis-authz-reason')?.header?.value,
  };
}

/** The value of one series of a counter, 0 when absent. */
export async function counterValue(authz: Authz, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await authz.allMetrics()).getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((sum, v) => sum + v.value, 0);
}

/** Resolves once authz's Redis client is connected: a Check before that mints instead of asking Redis (on purpose). */
export async function redisConnected(authz: Authz): Promise<void> {
  await eventually("authz's Redis client ready", () => authz.redis.status === 'ready', 30_000, {
    diagnose: () => `it is ${authz.redis.status}`,
  });
}
