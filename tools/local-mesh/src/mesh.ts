// The local mesh: etcd, Redis and the three deployables, each as its own process
// started from its build output exactly as on a VM (`node dist/apps/<app>/main.js`
// with TRELLIS_* variables). `npm start` and the end-to-end suite both use this.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { issueServerCertificate, loadOrCreateDevRoot } from '@trellis/pki';
import { withPortRetry } from '@trellis/testing';
import { startInfra } from './infra';
import { freePort } from './ports';
import { httpOk, startProcess, waitUntil, type ManagedProcess, type StartOptions } from './processes';

export const WORKSPACE_ROOT = resolve(__dirname, '../../..');

export interface LocalMeshOptions {
  /** Data folder (etcd, Redis, authz keys); `.trellis/` for `npm start`, a temp dir in tests. */
  dataDir: string;
  /** Use the conventional ports where free (npm start); any free port otherwise (tests). */
  preferConventionalPorts: boolean;
  /** The registry's and authz's admin token (`npm start` passes TRELLIS_ADMIN_TOKEN); random when absent. */
  adminToken?: string;
  onLine?: StartOptions['onLine'];
  /**
   * File of `service:secret` lines: authz takes them on POST /v1/token, the registry from
   * instance agents (each for its own service's instances).
   */
  serviceCredentials?: string;
  /** Extra environment per app, e.g. a stand-in Cloudflare certs URL in tests. */
  appEnv?: Partial<Record<AppName, NodeJS.ProcessEnv>>;
  /**
   * Workload identity on: authz's mesh CA signs with a dev root kept in `<dataDir>/ca`, and the
   * control plane serves xDS only over mTLS to workload certificates (its production setting).
   * Proxyless apps then reach it through their agent's xDS relay.
   */
  mtls?: boolean;
}

export type AppName = 'registry' | 'control-plane' | 'authz';

export interface LocalMesh {
  dataDir: string;
  etcdEndpoint: string;
  redisUrl: string;
  adminToken: string;
  /** The TRELLIS_ETCD_* variables `app` runs with (its own etcd user): for another process of that app. */
  etcdEnv(app: AppName): NodeJS.ProcessEnv;
  registryUrl: string;
  controlPlane: { xdsAddress: string; httpUrl: string };
  /** grpcAddress and mtlsUrl speak mTLS only: callers present a workload certificate from the dev root (`<dataDir>/ca`). */
  authz: { grpcAddress: string; httpUrl: string; mtlsUrl: string };
  /** Strict mTLS between services, the control plane admitting only workload certificates (see LocalMeshOptions.mtls). */
  mtls: boolean;
  /** The dev root every workload certificate chains to. */
  caFile: string;
  processes: ManagedProcess[];
  /**
   * Starts a process of the mesh again after it was stopped or killed (same
   * ports, data and environment) and waits until it is ready; it replaces the old
   * entry of `processes`. For fault injection.
   */
  restart(name: AppName | 'etcd' | 'redis'): Promise<ManagedProcess>;
  stop(): Promise<void>;
}

export async function startLocalMesh(options: LocalMeshOptions): Promise<LocalMesh> {
  const port = (conventional: number) => freePort(options.preferConventionalPorts ? conventional : 0);
  mkdirSync(options.dataDir, { recursive: true });
  const started: ManagedProcess[] = [];
  const stop = async () => {
    // Apps first (they drain), then the stores they use.
    for (const p of [...started].reverse()) await p.stop();
  };

  try {
    const infra = await startInfra({
      dataDir: options.dataDir,
      etcdPort: await port(2379),
      etcdPeerPort: await port(2380),
      redisPort: await port(6379),
      onLine: options.onLine,
    });
    started.push(...infra.processes);

    // Each app's ports are picked just before it starts, and picked afresh when another process
    // bound one in between (the app exits with EADDRINUSE): a free port is only free until bound.
    const ports = { registryHttp: 0, xds: 0, controlPlaneHttp: 0, authzGrpc: 0, authzHttp: 0, authzMtls: 0 };
    const adminToken = options.adminToken ?? randomBytes(24).toString('base64url');
    const common = {
      TRELLIS_ETCD_ENDPOINTS: infra.etcdEndpoint,
      TRELLIS_HOST: '127.0.0.1',
      TRELLIS_LOG_LEVEL: process.env['TRELLIS_LOG_LEVEL'] ?? 'info',
    };
    // As in production: each app has its own etcd user with the least it needs, and etcd auth is on.
    const etcdUsersDir = join(options.dataDir, 'etcd-users');
    const etcdUsers = ensureEtcdPasswords(etcdUsersDir);
    await setUpEtcdRoles({ ...common, ...etcdUsers.setupEnv }, options.onLine, etcdUsersDir);
    const etcdEnv = (app: AppName): NodeJS.ProcessEnv => ({ ...common, ...etcdUsers.appEnv[app] });
    const keysDir = ensureSigningKey(join(options.dataDir, 'authz-keys'));
    const pki = options.mtls ? await ensureDevPki(options.dataDir) : undefined;

    const apps: Array<{ app: AppName; pickPorts(): Promise<void>; env(): NodeJS.ProcessEnv; readyUrl(): string }> = [
      {
        app: 'authz',
        async pickPorts() {
          ports.authzGrpc = await port(9191);
          ports.authzHttp = await port(8181);
          ports.authzMtls = await port(8443);
        },
        env: () => ({
          TRELLIS_GRPC_PORT: String(ports.authzGrpc),
          TRELLIS_HTTP_PORT: String(ports.authzHttp),
          TRELLIS_MTLS_PORT: String(ports.authzMtls),
          // The mesh CA signs with a dev root kept in the data folder; callers prove themselves with its certificates.
          TRELLIS_CA_DEV_ROOT_DIR: join(options.dataDir, 'ca'),
          TRELLIS_REDIS_URL: infra.redisUrl,
          TRELLIS_SIGNING_KEYS_DIR: keysDir,
          TRELLIS_ADMIN_TOKEN: adminToken,
          ...(options.serviceCredentials ? { TRELLIS_TOKEN_ENDPOINT_CREDENTIALS: options.serviceCredentials } : {}),
        }),
        readyUrl: () => `http://127.0.0.1:${ports.authzHttp}/readyz`,
      },
      {
        app: 'control-plane',
        async pickPorts() {
          ports.xds = await port(18000);
          ports.controlPlaneHttp = await port(18080);
        },
        env: () => ({
          TRELLIS_XDS_PORT: String(ports.xds),
          TRELLIS_HTTP_PORT: String(ports.controlPlaneHttp),
          TRELLIS_AUTHZ_ADDRESS: `127.0.0.1:${ports.authzGrpc}`,
          // /debug/* and bootstraps answer the admin token (the CLI's TRELLIS_TOKEN), as in production.
          TRELLIS_ADMIN_TOKEN: adminToken,
          ...(pki
            ? {
                // Production's setting: only workload certificates naming node.cluster (proxyless apps come through their agent).
                TRELLIS_XDS_TLS_CERT_FILE: pki.xdsCertFile,
                TRELLIS_XDS_TLS_KEY_FILE: pki.xdsKeyFile,
                TRELLIS_XDS_TLS_CLIENT_CA_FILE: pki.caFile,
              }
            : // Without workload identity, proxyless clients (grpc-js-xds) cannot present credentials.
              { TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: 'true' }),
        }),
        readyUrl: () => `http://127.0.0.1:${ports.controlPlaneHttp}/readyz`,
      },
      {
        app: 'registry',
        async pickPorts() {
          ports.registryHttp = await port(8080);
        },
        env: () => ({
          TRELLIS_HTTP_PORT: String(ports.registryHttp),
          TRELLIS_ADMIN_TOKEN: adminToken,
          TRELLIS_CSRF_SECRET: randomBytes(32).toString('hex'),
          ...(options.serviceCredentials ? { TRELLIS_SERVICE_CREDENTIALS: options.serviceCredentials } : {}),
        }),
        readyUrl: () => `http://127.0.0.1:${ports.registryHttp}/readyz`,
      },
    ];
    const starters = new Map<string, () => Promise<ManagedProcess>>(Object.entries(infra.starters));
    for (const { app, pickPorts, env, readyUrl } of apps) {
      const main = join(WORKSPACE_ROOT, 'dist/apps', app, 'main.js');
      if (!existsSync(main))
        throw new Error(`${main} is missing: build it with \`npx nx run-many -t build -p registry control-plane authz\``);
      const startApp = async () => {
        const proc = startProcess({
          name: app,
          command: process.execPath,
          args: ['--enable-source-maps', main],
          env: { ...etcdEnv(app), ...env(), ...options.appEnv?.[app] },
          onLine: options.onLine,
        });
        started.push(proc);
        try {
          await waitUntil(`${app} /readyz`, () => httpOk(readyUrl()), { process: proc, timeoutMs: 60_000 });
        } catch (err) {
          // Not left in `started`: restart() and stop() act on the process that did start.
          await proc.stop();
          started.splice(started.indexOf(proc), 1);
          throw err;
        }
        return proc;
      };
      starters.set(app, startApp);
      // A restart (fault injection) keeps the ports: callers already hold the addresses.
      await withPortRetry(async () => {
        await pickPorts();
        return startApp();
      });
    }
    const restart = async (name: string): Promise<ManagedProcess> => {
      const start = starters.get(name);
      if (!start) throw new Error(`no process ${name} in the local mesh`);
      const old = started.findIndex((p) => p.name === name);
      if (old >= 0) {
        await started[old]!.stop();
        started.splice(old, 1);
      }
      const proc = await start();
      // The stores stay ahead of the apps in `processes`, so stop() still ends them last (apps add themselves).
      if (name === 'etcd' || name === 'redis') started.unshift(proc);
      return proc;
    };

    return {
      dataDir: options.dataDir,
      etcdEndpoint: infra.etcdEndpoint,
      redisUrl: infra.redisUrl,
      adminToken,
      etcdEnv,
      registryUrl: `http://127.0.0.1:${ports.registryHttp}`,
      controlPlane: { xdsAddress: `127.0.0.1:${ports.xds}`, httpUrl: `http://127.0.0.1:${ports.controlPlaneHttp}` },
      authz: {
        grpcAddress: `127.0.0.1:${ports.authzGrpc}`,
        httpUrl: `http://127.0.0.1:${ports.authzHttp}`,
        mtlsUrl: `https://127.0.0.1:${ports.authzMtls}`,
      },
      mtls: pki !== undefined,
      caFile: join(options.dataDir, 'ca', 'ca.crt'),
      processes: started,
      restart,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Passwords of etcd's root and of each app's user, made once and kept in the data folder (0600). */
function ensureEtcdPasswords(dir: string): { setupEnv: NodeJS.ProcessEnv; appEnv: Record<AppName, NodeJS.ProcessEnv> } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = (user: string) => {
    const path = join(dir, `${user}.password`);
    if (!existsSync(path)) writeFileSync(path, randomBytes(24).toString('base64url'), { mode: 0o600 });
    return path;
  };
  const user = (app: AppName) => ({ TRELLIS_ETCD_USERNAME: `trellis-${app}`, TRELLIS_ETCD_PASSWORD_FILE: file(app) });
  return {
    setupEnv: {
      TRELLIS_ETCD_ROOT_PASSWORD_FILE: file('root'),
      TRELLIS_ETCD_REGISTRY_PASSWORD_FILE: file('registry'),
      TRELLIS_ETCD_CONTROL_PLANE_PASSWORD_FILE: file('control-plane'),
      TRELLIS_ETCD_AUTHZ_PASSWORD_FILE: file('authz'),
    },
    appEnv: { registry: user('registry'), 'control-plane': user('control-plane'), authz: user('authz') },
  };
}

/** `registry setup-etcd-roles`: the same step the Helm hook Job and the VM docs run; safe to run on every start. */
async function setUpEtcdRoles(env: NodeJS.ProcessEnv, onLine: LocalMeshOptions['onLine'], passwordsDir: string): Promise<void> {
  const main = join(WORKSPACE_ROOT, 'dist/apps/registry/main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: build it with \`npx nx run-many -t build -p registry control-plane authz\``);
  const setup = startProcess({ name: 'setup-etcd-roles', command: process.execPath, args: [main, 'setup-etcd-roles'], env, onLine });
  // A deadline like every other wait of the start: a hung step fails with its output instead of stalling the caller.
  const timeoutMs = 60_000;
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    setup.exited,
    new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs))),
  ]).finally(() => clearTimeout(timer));
  if (code === 'timeout') {
    await setup.stop();
    throw new Error(`registry setup-etcd-roles did not finish within ${timeoutMs} ms:\n${setup.recentOutput.join('\n')}`);
  }
  if (code !== 0)
    throw new Error(
      `registry setup-etcd-roles exited with ${code} (etcd keeps the root password of the run that enabled auth: ` +
        `if ${passwordsDir} was deleted since, delete the whole data folder to start over):\n${setup.recentOutput.join('\n')}`,
    );
}

/** The dev mesh's RSA signing key; production mounts one from a Secret or systemd credential. */
function ensureSigningKey(dir: string): string {
  const file = join(dir, 'signing-key.pem');
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  }
  return dir;
}

/**
 * The dev root (shared with authz's TRELLIS_CA_DEV_ROOT_DIR, made once and kept) and the
 * control plane's xDS serving certificate for 127.0.0.1 from it, made on every start.
 */
async function ensureDevPki(dataDir: string): Promise<{ caDir: string; caFile: string; xdsCertFile: string; xdsKeyFile: string }> {
  const caDir = join(dataDir, 'ca');
  const root = await loadOrCreateDevRoot(caDir);
  const serving = await issueServerCertificate(root, {
    commonName: 'trellis-control-plane',
    ipAddresses: ['127.0.0.1'],
    dnsNames: ['localhost'],
  });
  const dir = join(dataDir, 'control-plane-tls');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const xdsCertFile = join(dir, 'tls.crt');
  const xdsKeyFile = join(dir, 'tls.key');
  writeFileSync(xdsCertFile, serving.certificatePem);
  writeFileSync(xdsKeyFile, serving.keyPem, { mode: 0o600 });
  return { caDir, caFile: root.certFile, xdsCertFile, xdsKeyFile };
}
