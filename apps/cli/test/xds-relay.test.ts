// The agent's local xDS relay against a control plane in its production setting
// (xDS over TLS, client certificates required, no insecure clients), all real
// processes: authz's mesh CA issues the agent's certificate; a proxyless
// grpc-js-xds app run by the agent gets its configuration through the relay and
// calls its dependency. Attacks: a client going straight to the control plane
// without a certificate, and a local client asking the relay for another
// service's configuration (SotW and Delta). More streams through one relay than
// the control plane allows on one connection (its default cap, 16) all get their
// configuration: the relay spreads them over upstream connections.
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Server, ServerCredentials, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { TypeUrl } from '@trellis/envoy-types';
import { AggregatedDiscoveryServiceClient } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import {
  DeltaDiscoveryRequest,
  DiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryResponse,
} from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { generateRootCa, issueServerCertificate, type RootCa } from '@trellis/pki';
import { createLogger, createMetricsRegistry } from '@trellis/runtime';
import { certificateFilesIn } from '@trellis/sdk-node';
import { freePort, startEtcd, startRedis, type TestEtcd, type TestRedis } from '@trellis/testing';
import { createAgentMetrics } from '../src/agent/metrics';
import { XdsRelay } from '../src/agent/xds-relay';
import { AppProcess, bundle, bundleScript, eventually, removeBundles } from './support/built-apps';

jest.setTimeout(300_000);

const TRUST_DOMAIN = 'shop.example';

type Outcome<T> = { ok: true; response: T } | { ok: false; code: number; details: string };

/** Opens one ADS stream (SotW or Delta), sends one request for clusters as `cluster`, and reports the first answer or the error. */
function firstAnswer(
  address: string,
  creds: ChannelCredentials,
  variant: 'sotw' | 'delta',
  cluster: string,
): Promise<Outcome<DiscoveryResponse | DeltaDiscoveryResponse>> {
  const client = new AggregatedDiscoveryServiceClient(address, creds, { 'grpc.ssl_target_name_override': 'localhost' });
  const node = { id: `${cluster}-probe`, cluster };
  const stream = variant === 'sotw' ? client.streamAggregatedResources() : client.deltaAggregatedResources();
  return new Promise<Outcome<DiscoveryResponse | DeltaDiscoveryResponse>>((resolve) => {
    const timer = setTimeout(() => resolve({ ok: false, code: -1, details: 'no answer within 30 s' }), 30_000);
    stream.on('data', (response: DiscoveryResponse | DeltaDiscoveryResponse) => {
      clearTimeout(timer);
      resolve({ ok: true, response });
    });
    stream.on('error', (err: ServiceError) => {
      clearTimeout(timer);
      resolve({ ok: false, code: err.code, details: err.details });
    });
    (stream.write as (m: unknown) => void)(
      variant === 'sotw'
        ? DiscoveryRequest.fromPartial({ node, typeUrl: TypeUrl.Cluster })
        : DeltaDiscoveryRequest.fromPartial({ node, typeUrl: TypeUrl.Cluster }),
    );
  }).finally(() => {
    stream.cancel();
    client.close();
  });
}

describe('trellis agent --xds-relay: proxyless apps reach an mTLS-only control plane', () => {
  let etcd: TestEtcd;
  let redis: TestRedis;
  let dir: string;
  let root: RootCa;
  let authz: AppProcess;
  let controlPlane: AppProcess;
  let agent: AppProcess;
  let b: Server;
  let xdsAddress: string;
  let relayAddress: string;

  beforeAll(async () => {
    [etcd, redis] = await Promise.all([startEtcd(), startRedis()]);
    dir = await mkdtemp(join(tmpdir(), 'agent-relay-'));
    root = await generateRootCa({ commonName: 'mesh root' });
    // The relay and the probes name the control plane localhost: an IP as the TLS server name is DEP0123.
    const serving = await issueServerCertificate(root, {
      commonName: 'control-plane',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
    const keys = join(dir, 'keys');
    await mkdir(keys);
    await Promise.all([
      writeFile(join(dir, 'ca.crt'), root.certificatePem),
      writeFile(join(dir, 'ca.key'), root.keyPem, { mode: 0o600 }),
      writeFile(join(dir, 'xds.crt'), serving.certificatePem),
      writeFile(join(dir, 'xds.key'), serving.keyPem, { mode: 0o600 }),
      writeFile(join(dir, 'credentials'), 'a:a-secret-0123456789abcdef\n'),
      writeFile(join(dir, 'a.secret'), 'a-secret-0123456789abcdef\n'),
      writeFile(
        join(keys, 'k1.pem'),
        generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
      ),
    ]);

    // b: a plain gRPC server (mtls off) that a's proxyless app calls through the mesh.
    b = new Server();
    new HealthImplementation({ '': 'SERVING' }).addToServer(b);
    const bPort = await new Promise<number>((resolve, reject) =>
      b.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
    const store = new MeshStore(etcd.client(), new KeyLayout(etcd.prefix));
    await store.createService({ name: 'b', team: 'shop', protocol: 'grpc', port: bPort }, 'test');
    await store.createService({ name: 'a', team: 'shop', protocol: 'grpc', port: 50051, dependencies: [{ service: 'b' }] }, 'test');
    await store.registerInstance({ service: 'b', id: 'b-1', address: '127.0.0.1', port: bPort, platform: 'vm' }, 300);

    const etcdEnv = { TRELLIS_HOST: '127.0.0.1', TRELLIS_ETCD_ENDPOINTS: etcd.endpoints.join(','), TRELLIS_ETCD_PREFIX: etcd.prefix };
    const authzHttp = await freePort();
    authz = AppProcess.start('authz', bundle('authz'), [], {
      ...etcdEnv,
      TRELLIS_GRPC_PORT: '0',
      TRELLIS_HTTP_PORT: String(authzHttp),
      TRELLIS_MTLS_PORT: '0',
      TRELLIS_REDIS_URL: redis.url,
      TRELLIS_SIGNING_KEYS_DIR: keys,
      TRELLIS_TRUST_DOMAIN: TRUST_DOMAIN,
      TRELLIS_CA_CERT_FILE: join(dir, 'ca.crt'),
      TRELLIS_CA_KEY_FILE: join(dir, 'ca.key'),
      TRELLIS_TOKEN_ENDPOINT_CREDENTIALS: join(dir, 'credentials'),
    });
    const [xdsPort, cpHttp] = [await freePort(), await freePort()];
    xdsAddress = `127.0.0.1:${xdsPort}`;
    // Production settings: TLS, client certificates from the mesh CA required, no insecure clients (the default).
    controlPlane = AppProcess.start('control-plane', bundle('control-plane'), [], {
      ...etcdEnv,
      TRELLIS_XDS_PORT: String(xdsPort),
      TRELLIS_HTTP_PORT: String(cpHttp),
      TRELLIS_XDS_TLS_CERT_FILE: join(dir, 'xds.crt'),
      TRELLIS_XDS_TLS_KEY_FILE: join(dir, 'xds.key'),
      TRELLIS_XDS_TLS_CLIENT_CA_FILE: join(dir, 'ca.crt'),
    });
    await eventually('authz ready', async () => (await fetch(`http://127.0.0.1:${authzHttp}/readyz`)).ok || undefined, 60_000, [authz]);
    await eventually('control plane ready', async () => (await fetch(`http://127.0.0.1:${cpHttp}/readyz`)).ok || undefined, 60_000, [
      controlPlane,
    ]);

    // A Unix socket (mode 0660): only the agent's user and group can reach it. 127.0.0.1:PORT works the same.
    relayAddress = `unix:${join(dir, 'xds.sock')}`;
    agent = AppProcess.start(
      'agent',
      bundle('cli'),
      [
        'agent',
        '--service=a',
        '--instance-id=a-1',
        '--address=127.0.0.1',
        '--port=50051',
        '--health-check=none',
        '--registry=http://127.0.0.1:9', // no registry here: registering retries in the background
        `--credential-file=${join(dir, 'a.secret')}`,
        `--authz=http://127.0.0.1:${authzHttp}`,
        `--certificate-dir=${join(dir, 'certs')}`,
        `--xds-relay=${relayAddress}`,
        `--xds-server=${xdsAddress}`,
        '--xds-server-name=localhost',
        `--grpc-bootstrap=${join(dir, 'grpc-bootstrap.json')}`,
        '--http-port=off',
        '--',
        process.execPath,
        await bundleScript('xds-caller'),
        'b',
      ],
      {},
    );
  });
  afterAll(async () => {
    await agent?.stop();
    await controlPlane?.stop();
    await authz?.stop();
    await new Promise<void>((resolve) => (b ? b.tryShutdown(() => resolve()) : resolve()));
    await Promise.all([etcd?.stop(), redis?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
    removeBundles();
  });

  it('a grpc-js-xds app under the agent gets its config through the relay and calls b', async () => {
    await agent.waitForLine(/"call":"xds-caller","ok":true,"status":"SERVING"/, 120_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${controlPlane.recentOutput()}`);
    });
    const bootstrap = JSON.parse(await readFile(join(dir, 'grpc-bootstrap.json'), 'utf8')) as {
      xds_servers: { server_uri: string; channel_creds: { type: string }[] }[];
      node: { id: string; cluster: string };
      certificate_providers: Record<string, { config: { certificate_file: string } }>;
    };
    expect(bootstrap.xds_servers[0]).toMatchObject({ server_uri: relayAddress, channel_creds: [{ type: 'insecure' }] });
    expect(bootstrap.node).toMatchObject({ id: 'a-1', cluster: 'a' });
    expect(Object.values(bootstrap.certificate_providers)[0]!.config.certificate_file).toBe(join(dir, 'certs', 'cert.pem'));
  });

  it('serves Delta streams through the relay as well', async () => {
    const answer = await firstAnswer(relayAddress, credentials.createInsecure(), 'delta', 'a');
    expect(answer.ok).toBe(true);
    expect((answer as { response: DeltaDiscoveryResponse }).response.typeUrl).toBe(TypeUrl.Cluster);
  });

  it('attack: a client without a certificate straight to the control plane gets nothing', async () => {
    const plaintext = await firstAnswer(xdsAddress, credentials.createInsecure(), 'sotw', 'a');
    expect(plaintext).toMatchObject({ ok: false, code: status.UNAVAILABLE });
    const tlsWithoutCertificate = await firstAnswer(xdsAddress, credentials.createSsl(Buffer.from(root.certificatePem)), 'sotw', 'a');
    expect(tlsWithoutCertificate).toMatchObject({ ok: false, code: status.UNAVAILABLE });
  });

  it("attack: a local client cannot borrow the agent's certificate for another service's config", async () => {
    for (const variant of ['sotw', 'delta'] as const) {
      const impostor = await firstAnswer(relayAddress, credentials.createInsecure(), variant, 'b');
      expect(impostor).toMatchObject({ ok: false, code: status.PERMISSION_DENIED });
      expect((impostor as { details: string }).details).toMatch(/serves service "a" only; node.cluster is "b"/);
    }
    // The relay's own service still gets its config on SotW.
    const own = await firstAnswer(relayAddress, credentials.createInsecure(), 'sotw', 'a');
    expect(own.ok).toBe(true);
  });

  describe('more streams than one control-plane connection takes', () => {
    /** An in-process relay as service a, to the real control plane, with the certificate the agent above holds. */
    const startRelay = async (maxStreamsPerUpstream: number) => {
      const files = certificateFilesIn(join(dir, 'certs'));
      await eventually('the agent holds a certificate', async () => (await readFile(files.certificateFile)).length > 0, 60_000, [agent]);
      const metrics = createAgentMetrics(createMetricsRegistry('agent'));
      const relay = new XdsRelay({
        service: 'a',
        listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
        upstream: xdsAddress,
        serverName: 'localhost',
        credentials: async () =>
          credentials.createSsl(
            await readFile(files.caCertificateFile),
            await readFile(files.privateKeyFile),
            await readFile(files.certificateFile),
          ),
        logger: createLogger('agent', 'silent'),
        metrics,
        maxStreamsPerUpstream,
      });
      await relay.start();
      const upstreams = async () => (await metrics.xdsRelayUpstreams.get()).values[0]?.value ?? 0;
      return { relay, upstreams };
    };

    /** 20 SotW streams from 4 client connections (5 each), all held open until every one has its first answer or error. */
    const openTwenty = async (target: string) => {
      const clients = Array.from(
        { length: 4 },
        () => new AggregatedDiscoveryServiceClient(target, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }),
      );
      const streams = clients.flatMap((client) => Array.from({ length: 5 }, () => client.streamAggregatedResources()));
      const outcomes = await Promise.all(
        streams.map(
          (stream, i) =>
            new Promise<Outcome<DiscoveryResponse>>((resolve) => {
              const timer = setTimeout(() => resolve({ ok: false, code: -1, details: 'no answer within 60 s' }), 60_000);
              stream.on('data', (response: DiscoveryResponse) => {
                clearTimeout(timer);
                resolve({ ok: true, response });
              });
              stream.on('error', (err: ServiceError) => {
                clearTimeout(timer);
                resolve({ ok: false, code: err.code, details: err.details });
              });
              stream.write(DiscoveryRequest.fromPartial({ node: { id: `a-probe-${i}`, cluster: 'a' }, typeUrl: TypeUrl.Cluster }));
            }),
        ),
      );
      const close = () => {
        for (const stream of streams) stream.cancel();
        for (const client of clients) client.close();
      };
      return { outcomes, close };
    };

    it('20 streams through the relay all get their clusters, over 3 upstream connections that close when the streams end', async () => {
      const { relay, upstreams } = await startRelay(8);
      try {
        const { outcomes, close } = await openTwenty(relay.target);
        expect(outcomes.filter((o) => !o.ok)).toEqual([]);
        for (const o of outcomes) expect((o as { response: DiscoveryResponse }).response.typeUrl).toBe(TypeUrl.Cluster);
        expect(await upstreams()).toBe(3); // 8 + 8 + 4
        close();
        await eventually('the upstream connections close', async () => (await upstreams()) === 0, 30_000);
      } finally {
        await relay.stop();
      }
    });

    it('(the cap this works around) 20 streams on one upstream connection: the control plane refuses those past 16; the next stream goes to a new connection', async () => {
      const { relay, upstreams } = await startRelay(100);
      try {
        const { outcomes, close } = await openTwenty(relay.target);
        const refused = outcomes.filter((o) => !o.ok);
        expect(refused.length).toBe(4);
        for (const o of refused) expect(o).toMatchObject({ ok: false, code: status.RESOURCE_EXHAUSTED });
        // A relay set above the control plane's cap learns it from the refusal: the full connection takes no more
        // streams, so an app retrying (as grpc-js-xds does) is served on a new one.
        const retry = await firstAnswer(relay.target, credentials.createInsecure(), 'sotw', 'a');
        expect(retry.ok).toBe(true);
        expect(await upstreams()).toBe(2);
        close();
      } finally {
        await relay.stop();
      }
    });
  });
});
