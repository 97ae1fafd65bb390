// A real control plane (startControlPlane on port 0) over a real etcd, plus the
// registry's store to make changes with.
import { KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { eventually, startEtcd, type TestEtcd } from '@trellis/testing';
import { startControlPlane, type ControlPlane, type ControlPlaneDeps, type ControlPlaneOptions } from '../../src/control-plane';
import { unpackAny } from '@trellis/envoy-types';
import { ProtoValidator } from '@trellis/envoy-types/validation';
// Importing the resource modules registers their types for unpackAny.
import '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import '@trellis/envoy-types/envoy/config/listener/v3/listener';
import '@trellis/envoy-types/envoy/config/route/v3/route';
import { composeCallbacks, type XdsCallbacks } from '../../src/xds/callbacks';

let sharedValidator: ProtoValidator | undefined;
/** validate.rules from Envoy's protos, loaded once per test file. */
const validator = (): ProtoValidator => (sharedValidator ??= ProtoValidator.load());

/** Every distinct resource the control plane sent that does not decode or breaks a validate.rules constraint. */
export interface EmittedCheck {
  checked: number;
  problems: { resource: string; typeUrl: string; violations: unknown }[];
}

export interface ControlPlaneHarness {
  /** What the wire tap found in every resource sent so far. */
  emitted: EmittedCheck;
  etcd: TestEtcd;
  layout: KeyLayout;
  store: MeshStore;
  cp: ControlPlane;
  xdsAddress: string;
  httpUrl: string;
  stop(): Promise<void>;
}

export const TEST_CONTROL_PLANE_OPTIONS: ControlPlaneOptions = {
  TRELLIS_HOST: '127.0.0.1',
  TRELLIS_XDS_PORT: 0,
  TRELLIS_HTTP_PORT: 0,
  TRELLIS_AUTHZ_ADDRESS: { host: '127.0.0.1', port: 9191 },
  TRELLIS_AUTHZ_TLS: true,
  TRELLIS_XDS_ADVERTISE_ADDRESS: undefined,
  TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: true,
  TRELLIS_CONTROL_PLANE_ID: 'cp-test',
  TRELLIS_XDS_DEBOUNCE_MS: 100,
  TRELLIS_XDS_DEBOUNCE_MAX_MS: 500,
  TRELLIS_XDS_FANOUT_SLICE_MS: 20,
  TRELLIS_PROXY_STATUS_INTERVAL_MS: 200,
  TRELLIS_PROXY_STATUS_MAX_WRITES: 200,
  TRELLIS_ENDPOINT_RETENTION_SECONDS: 60,
  TRELLIS_ENDPOINT_RETENTION_SHARE: 0.5,
  TRELLIS_ENDPOINT_RETENTION_WINDOW_MS: 10_000,
  TRELLIS_XDS_MAX_STREAMS_PER_CONNECTION: 16,
  TRELLIS_XDS_MAX_REQUEST_BYTES: 4 * 1024 * 1024,
  TRELLIS_XDS_FIRST_REQUEST_TIMEOUT_MS: 60_000,
  TRELLIS_XDS_KEEPALIVE_TIME_MS: 30_000,
  TRELLIS_XDS_KEEPALIVE_TIMEOUT_MS: 60_000,
  TRELLIS_HTTP_HEADERS_TIMEOUT_MS: 10_000,
  TRELLIS_HTTP_REQUEST_TIMEOUT_MS: 30_000,
};

export async function startControlPlaneHarness(
  overrides: Partial<ControlPlaneOptions> = {},
  callbacks?: XdsCallbacks,
  etcd?: TestEtcd,
  /** What main.ts hands over besides config: the etcd client certificate it read (the test etcd runs without TLS). */
  deps: Pick<ControlPlaneDeps, 'etcdClientCert'> = {},
): Promise<ControlPlaneHarness> {
  const ownEtcd = !etcd;
  const testEtcd = etcd ?? (await startEtcd());
  try {
    return await startOn(testEtcd, ownEtcd, overrides, callbacks, deps);
  } catch (err) {
    // An etcd this harness started is its to stop: left running, it kept jest from exiting after the failure.
    if (ownEtcd) await testEtcd.close().catch(() => undefined);
    throw err;
  }
}

async function startOn(
  testEtcd: TestEtcd,
  ownEtcd: boolean,
  overrides: Partial<ControlPlaneOptions>,
  callbacks: XdsCallbacks | undefined,
  deps: Pick<ControlPlaneDeps, 'etcdClientCert'>,
): Promise<ControlPlaneHarness> {
  const layout = new KeyLayout(testEtcd.prefix);
  const store = new MeshStore(testEtcd.client(), layout);
  await store.ensureMeshSettings({ tokenIssuer: 'trellis', clockSkewSeconds: 30 });
  const emitted: EmittedCheck = { checked: 0, problems: [] };
  const seen = new Set<string>();
  const tap: XdsCallbacks = {
    onResponse: (_stream, response) => {
      for (const resource of response.sent) {
        if (seen.has(resource.hash)) continue;
        seen.add(resource.hash);
        emitted.checked++;
        try {
          unpackAny(resource.any);
          const violations = validator().validateAny(resource.any);
          if (violations.length > 0) emitted.problems.push({ resource: resource.name, typeUrl: resource.typeUrl, violations });
        } catch (err) {
          emitted.problems.push({ resource: resource.name, typeUrl: resource.typeUrl, violations: String(err) });
        }
      }
    },
  };
  const cp = await startControlPlane({
    config: { ...TEST_CONTROL_PLANE_OPTIONS, ...overrides },
    etcd: testEtcd.client(),
    etcdClientCert: deps.etcdClientCert,
    layout,
    logger: createLogger('control-plane', process.env['TRELLIS_TEST_LOG_LEVEL'] ?? 'silent'),
    callbacks: callbacks ? composeCallbacks(tap, callbacks) : tap,
  });
  try {
    await cp.watcher.whenReady();
    await eventually('the first mesh snapshot served', () => (cp.cache.ready && cp.watcher.live) || undefined);
  } catch (err) {
    await cp.close().catch(() => undefined);
    throw err;
  }
  return {
    emitted,
    etcd: testEtcd,
    layout,
    store,
    cp,
    xdsAddress: `127.0.0.1:${cp.xdsPort}`,
    httpUrl: `http://127.0.0.1:${cp.httpPort}`,
    async stop() {
      await cp.close();
      if (ownEtcd) await testEtcd.close();
    },
  };
}

/** Polls until a probe holds (generous deadlines: a loaded machine is slow, not failing); shared by every control-plane test. */
export { eventually } from '@trellis/testing';
