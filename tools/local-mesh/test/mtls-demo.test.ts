// `npm start`'s default: the demo in strict mTLS. Each instance's trellis agent gets
// its workload certificate from authz's mesh CA (dev root), relays xDS to a control
// plane that admits only workload certificates, and the hops show the caller the
// TLS handshake proved next to the one the mesh token names.
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { HopClient } from '@trellis/envoy-types/trellis/demo/v1/hop';
import { eventually } from '@trellis/testing';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoCertificateDir, describeHops, startDemo, writeDemoCredentials, type Demo } from '../src/demo/demo';
import { startLocalMesh, type LocalMesh } from '../src/mesh';
import { LOCAL_MESH_BUNDLES } from './build-once';

jest.setTimeout(300_000);

let dataDir: string;
let mesh: LocalMesh;
let demo: Demo;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'trellis-mtls-demo-'));
  const creds = writeDemoCredentials(dataDir);
  const onLine = process.env['E2E_VERBOSE'] ? (name: string, line: string) => process.stdout.write(`[${name}] ${line}\n`) : () => undefined;
  mesh = await startLocalMesh({ dataDir, preferConventionalPorts: false, serviceCredentials: creds.file, mtls: true, onLine });
  demo = await startDemo(mesh, creds, { demoServiceScript: join(LOCAL_MESH_BUNDLES, 'demo-service.js'), onLine });
});

afterAll(async () => {
  await demo?.stop();
  await mesh?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

it('every hop behind the entry point shows the caller its certificate proves, matching its token', async () => {
  const hops = await eventually('demo traffic over mTLS', () => demo.callEntry(), 90_000, {
    intervalMs: 250,
    retryErrors: true,
    diagnose: () =>
      [...(mesh?.processes ?? []), ...(demo?.processes ?? [])]
        .map((p) => `--- ${p.name}\n${p.recentOutput.slice(-8).join('\n')}`)
        .join('\n'),
  });
  process.stdout.write(`[mtls-demo]\n    ${describeHops(hops)}\n`);
  const byService = new Map(hops.map((h) => [h.service, h]));
  expect(byService.get('front')).toMatchObject({ caller: '', peerIdentity: '' });
  expect(byService.get('service-a')).toMatchObject({ caller: 'front', peerIdentity: 'front', tokenAudience: 'service-a' });
  expect(byService.get('service-b')).toMatchObject({ caller: 'service-a', peerIdentity: 'service-a' });
  expect(byService.get('service-c')).toMatchObject({ caller: 'service-a', peerIdentity: 'service-a' });
  expect(describeHops(hops)).toContain('front → service-a [service-a-1] mTLS peer=front (verified certificate)');
  // front started a W3C trace for the edge's request; service-a, -b and -c continued it (@trellis/sdk-node).
  const [traceId] = hops.map((h) => h.traceId);
  expect(traceId).toMatch(/^[0-9a-f]{32}$/);
  expect(hops.map((h) => h.traceId)).toEqual(hops.map(() => traceId));
});

it("each instance's certificate comes from the mesh CA and names its service", () => {
  const root = new X509Certificate(readFileSync(mesh.caFile));
  const cert = new X509Certificate(readFileSync(join(demoCertificateDir(mesh, 'service-b-2'), 'cert.pem')));
  expect(cert.subjectAltName).toBe('URI:spiffe://trellis.local/svc/service-b');
  expect(cert.checkIssued(root) && cert.verify(root.publicKey)).toBe(true);
});

it('a strict service refuses a caller without a workload certificate', async () => {
  const res = await fetch(`${mesh.registryUrl}/api/v1/services/service-b/instances`);
  const { items } = (await res.json()) as { items: Array<{ address: string; port: number }> };
  const target = `${items[0]!.address}:${items[0]!.port}`;
  const call = (creds: ReturnType<typeof credentials.createInsecure>) => {
    // No server identity is checked here; over TLS the name is SNI only, and an IP there is deprecated (DEP0123).
    const client = new HopClient(target, creds, { 'grpc.ssl_target_name_override': 'localhost' });
    return new Promise<ServiceError | undefined>((resolve) =>
      client.call({ origin: 'intruder' }, new Metadata(), { deadline: Date.now() + 10_000 }, (err) => {
        client.close();
        resolve(err ?? undefined);
      }),
    );
  };
  expect((await call(credentials.createInsecure()))?.code).toBe(status.UNAVAILABLE);
  const tlsOnly = credentials.createSsl(readFileSync(mesh.caFile), null, null, { checkServerIdentity: () => undefined });
  expect((await call(tlsOnly))?.code).toBe(status.UNAVAILABLE);
});
