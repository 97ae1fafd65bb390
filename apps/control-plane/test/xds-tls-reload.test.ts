// The xDS port's certificate, key and client CA follow their files without a restart.
// The files are a Secret volume updated as the kubelet does (a `..data` symlink swap),
// rotated from one PKI to another: after the swap a client that trusts only the new CA
// (and presents a certificate from it) connects, one that trusts only the old CA is
// refused, and a stream opened before the swap keeps being served. A broken or
// mismatched file is refused and the last good certificate keeps serving (TLS, never
// plaintext). Two control planes poll every second; the third's poll is an hour away,
// so only reloadFiles() can apply its rotation; the last is main.ts run as a process,
// sent SIGHUP.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, status as GrpcStatus } from '@grpc/grpc-js';
import { TypeUrl } from '@trellis/envoy-types';
import { KeyLayout, MeshStore } from '@trellis/mesh-schema';
import {
  createTestPki,
  eventually,
  freePort,
  ManagedProcess,
  startEtcd,
  updateSecretVolume,
  waitUntil,
  type TestEtcd,
  type TestPki,
} from '@trellis/testing';
import { AdsTestClient, testNode } from './support/ads-client';
import { startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';
import { bundle } from './support/xds-client-process';

jest.setTimeout(180_000);

/** A control plane's xDS address: the in-process harness, or main.ts run as a process. */
type XdsServer = Pick<ControlPlaneHarness, 'xdsAddress'>;

/** The Secret's content for `pki`: the server pair and the CA its clients' certificates chain to. */
const secretOf = (pki: TestPki, overrides: Partial<Record<'tls.crt' | 'tls.key' | 'ca.crt', Buffer | string>> = {}) => ({
  'tls.crt': pki.server.cert,
  'tls.key': pki.server.key,
  'ca.crt': pki.ca,
  ...overrides,
});

async function reloads(h: ControlPlaneHarness, result: 'changed' | 'unchanged' | 'error'): Promise<number> {
  const metric = await h.cp.registry.getSingleMetric('trellis_control_plane_xds_tls_reloads_total')!.get();
  return metric.values.find((v) => v.labels.result === result)?.value ?? 0;
}

describe("the xDS port's TLS files, rotated without a restart", () => {
  let etcd: TestEtcd;
  let oldPki: TestPki;
  let newPki: TestPki;
  const dirs: string[] = [];
  const harnesses: ControlPlaneHarness[] = [];
  const clients: AdsTestClient<'sotw'>[] = [];

  /** An xDS client of service `a` that trusts only `trusts`' CA and presents `presents`' certificate for `a`. */
  const open = (h: XdsServer, trusts: TestPki, presents: TestPki = trusts) => {
    const own = presents.client('a');
    const client = AdsTestClient.open(h.xdsAddress, 'sotw', undefined, credentials.createSsl(trusts.ca, own.key, own.cert));
    clients.push(client);
    return client;
  };
  /** Whether a new connection from such a client is served: a Cluster response, or the stream's status when it is refused. */
  const connect = async (h: XdsServer, trusts: TestPki, presents: TestPki = trusts) => {
    const client = open(h, trusts, presents);
    client.send({ node: testNode('a', `a-${clients.length}`), typeUrl: TypeUrl.Cluster });
    const outcome = await Promise.race([
      client.next().then((r) => ({ served: r.typeUrl === TypeUrl.Cluster })),
      client.closedWith().then((status) => ({ served: false, status })),
    ]);
    client.close();
    return outcome;
  };

  const start = async (reloadSeconds: number) => {
    const dir = await mkdtemp(join(tmpdir(), 'cp-xds-tls-'));
    dirs.push(dir);
    await updateSecretVolume(dir, secretOf(oldPki));
    const h = await startControlPlaneHarness(
      {
        TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: false,
        TRELLIS_XDS_TLS_CERT_FILE: join(dir, 'tls.crt'),
        TRELLIS_XDS_TLS_KEY_FILE: join(dir, 'tls.key'),
        TRELLIS_XDS_TLS_CLIENT_CA_FILE: join(dir, 'ca.crt'),
        TRELLIS_XDS_TLS_RELOAD_SECONDS: reloadSeconds,
      },
      undefined,
      etcd,
    );
    harnesses.push(h);
    return { dir, h };
  };

  beforeAll(async () => {
    oldPki = createTestPki();
    newPki = createTestPki();
    etcd = await startEtcd();
    await new MeshStore(etcd.client(), new KeyLayout(etcd.prefix)).createService(
      { name: 'a', team: 'core', protocol: 'http', port: 8080 },
      'test',
    );
  });
  // One control plane at a time on the shared etcd (they share a control-plane id in proxy status records).
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const h of harnesses.splice(0)) await h.stop();
  });
  afterAll(async () => {
    await etcd?.close();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    oldPki?.remove();
    newPki?.remove();
  });

  it('polls: after a swap to a new PKI, new connections use it, old-CA clients are refused, an open stream is still served', async () => {
    const { dir, h } = await start(1);
    const established = open(h, oldPki);
    established.send({ node: testNode('a', 'a-established'), typeUrl: TypeUrl.Cluster });
    const clusters = await established.next();
    expect(clusters.typeUrl).toBe(TypeUrl.Cluster);
    expect(await connect(h, newPki)).toMatchObject({ served: false, status: { code: GrpcStatus.UNAVAILABLE } });

    await updateSecretVolume(dir, secretOf(newPki));
    await eventually(
      'a client trusting only the new CA is served',
      async () => ((await connect(h, newPki)).served ? true : undefined),
      60_000,
      {
        intervalMs: 500,
      },
    );
    // The server's certificate is the new CA's: a client that trusts only the old one refuses it.
    expect(await connect(h, oldPki)).toMatchObject({ served: false, status: { code: GrpcStatus.UNAVAILABLE } });
    // The client CA rotated too: a certificate from the old CA no longer gets in, even from a client that trusts the server.
    expect(await connect(h, newPki, oldPki)).toMatchObject({ served: false, status: { code: GrpcStatus.UNAVAILABLE } });
    expect(await reloads(h, 'changed')).toBeGreaterThanOrEqual(1);

    // The stream opened before the swap keeps its connection and is served: after the ACK, as Envoy goes on, listeners.
    established.ack(TypeUrl.Cluster, clusters);
    established.send({ typeUrl: TypeUrl.Listener });
    expect((await established.next()).typeUrl).toBe(TypeUrl.Listener);
  });

  it('keeps the last good certificate when the files are broken or do not match, and takes a repaired Secret', async () => {
    const { dir, h } = await start(1);
    // The new certificate with the old key (a half-finished rotation), then a certificate that is not PEM at all.
    for (const broken of [secretOf(newPki, { 'tls.key': oldPki.server.key }), secretOf(newPki, { 'tls.crt': 'not a certificate\n' })]) {
      const errors = await reloads(h, 'error');
      await updateSecretVolume(dir, broken);
      await eventually('the broken Secret is refused', async () => ((await reloads(h, 'error')) > errors ? true : undefined), 60_000, {
        intervalMs: 200,
      });
      // Still TLS with the old certificate and client CA: never plaintext, never nothing.
      expect((await connect(h, oldPki)).served).toBe(true);
      expect(await connect(h, newPki)).toMatchObject({ served: false, status: { code: GrpcStatus.UNAVAILABLE } });
    }
    const plaintext = AdsTestClient.open(h.xdsAddress, 'sotw');
    clients.push(plaintext);
    plaintext.send({ node: testNode('a', 'a-plaintext'), typeUrl: TypeUrl.Cluster });
    expect((await plaintext.closedWith()).code).toBe(GrpcStatus.UNAVAILABLE);
    expect(await reloads(h, 'changed')).toBe(0);

    await updateSecretVolume(dir, secretOf(newPki));
    await eventually('the repaired Secret serves', async () => ((await connect(h, newPki)).served ? true : undefined), 60_000, {
      intervalMs: 500,
    });
  });

  it('reloadFiles (SIGHUP) applies a rotation at once, with the poll an hour away', async () => {
    const { dir, h } = await start(3_600);
    await updateSecretVolume(dir, secretOf(newPki));
    expect((await connect(h, oldPki)).served).toBe(true);

    await h.cp.reloadFiles();
    expect((await connect(h, newPki)).served).toBe(true);
    expect(await connect(h, oldPki)).toMatchObject({ served: false, status: { code: GrpcStatus.UNAVAILABLE } });
  });

  // main.ts's SIGHUP handler, in the process: the rotation applies (the poll is an hour away) and the process lives
  // on (Node's default for SIGHUP is to exit).
  it('SIGHUP to the control-plane process (systemctl reload) applies a rotation at once; the process keeps serving', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cp-xds-tls-process-'));
    dirs.push(dir);
    await updateSecretVolume(dir, secretOf(oldPki));
    const [xdsPort, httpPort] = [await freePort(), await freePort()];
    const env = {
      TRELLIS_ETCD_ENDPOINTS: etcd.endpoints.join(','),
      TRELLIS_ETCD_PREFIX: etcd.prefix,
      TRELLIS_HOST: '127.0.0.1',
      TRELLIS_XDS_PORT: String(xdsPort),
      TRELLIS_HTTP_PORT: String(httpPort),
      TRELLIS_CONTROL_PLANE_ID: 'cp-tls-process',
      TRELLIS_XDS_TLS_CERT_FILE: join(dir, 'tls.crt'),
      TRELLIS_XDS_TLS_KEY_FILE: join(dir, 'tls.key'),
      TRELLIS_XDS_TLS_CLIENT_CA_FILE: join(dir, 'ca.crt'),
      TRELLIS_XDS_TLS_RELOAD_SECONDS: '3600',
      TRELLIS_LOG_LEVEL: 'warn',
    };
    // ManagedProcess passes no environment of its own: go through env(1), which execs node (the signal reaches it).
    const cp = new ManagedProcess('control-plane', '/usr/bin/env', [
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      process.execPath,
      await bundle('control-plane-process'),
    ]);
    try {
      cp.start();
      await waitUntil('control plane /readyz', async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).ok, cp);
      const server = { xdsAddress: `127.0.0.1:${xdsPort}` };
      expect((await connect(server, oldPki)).served).toBe(true);

      await updateSecretVolume(dir, secretOf(newPki));
      expect(cp.signal('SIGHUP')).toBe(true);
      await eventually(
        'a client trusting only the new CA is served',
        async () => ((await connect(server, newPki)).served ? true : undefined),
        60_000,
        {
          intervalMs: 500,
        },
      );
      expect(await connect(server, oldPki)).toMatchObject({ served: false, status: { code: GrpcStatus.UNAVAILABLE } });
      expect(cp.running).toBe(true);
    } finally {
      await cp.stop();
    }
  });
});
