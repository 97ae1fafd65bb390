// `npm start`: the whole mesh on this machine — etcd, Redis, registry, control
// plane, authz — plus the demo services, with traffic flowing every two seconds.
// Ctrl-C stops everything.
import { join } from 'node:path';
import { describeHops, startDemo, writeDemoCredentials, type Demo } from './demo/demo';
import { startLocalMesh, WORKSPACE_ROOT, type LocalMesh } from './mesh';
import { stopAllProcesses } from './processes';

// Installed before anything starts: SIGINT or SIGTERM at any moment, startup included,
// stops every process the mesh started (they are detached, so only we can stop them).
let stopping = false;
let traffic: NodeJS.Timeout | undefined;
let mesh: LocalMesh | undefined;
let demo: Demo | undefined;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log('\nStopping…');
  clearInterval(traffic);
  await demo?.stop();
  await mesh?.stop();
  await stopAllProcesses(); // whatever a startup under way had already started
  console.log('Stopped.');
  process.exit(0);
}
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());

async function main(): Promise<void> {
  const dataDir = process.env['TRELLIS_LOCAL_DATA_DIR'] ?? join(WORKSPACE_ROOT, '.trellis');
  const creds = writeDemoCredentials(dataDir);
  const quiet = process.env['TRELLIS_LOCAL_VERBOSE'] !== 'true';
  // App logs go to .trellis/logs via the prefix printer only when verbose; errors always show.
  const onLine = (name: string, line: string) => {
    if (!quiet || /"level":(50|60)|error|Error/.test(line)) process.stdout.write(`[${name}] ${line}\n`);
  };

  console.log('Starting the Trellis local mesh (data in %s)…', dataDir);
  mesh = await startLocalMesh({
    dataDir,
    // Any free ports with TRELLIS_LOCAL_PORTS=any: a second mesh on the machine (the end-to-end suite's) takes none of these.
    preferConventionalPorts: process.env['TRELLIS_LOCAL_PORTS'] !== 'any',
    adminToken: process.env['TRELLIS_ADMIN_TOKEN'] || undefined,
    onLine,
    serviceCredentials: creds.file,
    // Workload identity: the agents' certificates from authz's mesh CA, strict mTLS between demo services.
    mtls: process.env['TRELLIS_LOCAL_MTLS'] !== 'false',
  });
  demo = await startDemo(mesh, creds, { demoServiceScript: join(__dirname, 'demo-service.js'), onLine });

  console.log(`
Trellis is up.
  registry UI        ${mesh.registryUrl}/            (admin token: ${mesh.adminToken})
  registry API       ${mesh.registryUrl}/api/v1/services   OpenAPI: ${mesh.registryUrl}/openapi.json
  topology           ${mesh.registryUrl}/topology
  control plane      xDS ${mesh.controlPlane.xdsAddress}   config dump: TRELLIS_TOKEN=<admin token> npx trellis config-dump front-1  (${mesh.controlPlane.httpUrl}/debug/*: Bearer <admin token>)
  authz              gRPC ${mesh.authz.grpcAddress} and tokens ${mesh.authz.mtlsUrl}/v1/token (mTLS: dev CA in ${join(dataDir, 'ca')})   JWKS ${mesh.authz.httpUrl}/.well-known/jwks.json
  metrics            ${mesh.registryUrl}/metrics  ${mesh.controlPlane.httpUrl}/metrics  ${mesh.authz.httpUrl}/metrics
  etcd ${mesh.etcdEndpoint} (auth on; each app its own user, passwords in ${join(dataDir, 'etcd-users')})   redis ${mesh.redisUrl}
Demo traffic (edge → front → service-a → service-b, service-c) every 2 s; Ctrl-C stops everything.
${
  mesh.mtls
    ? `mTLS: strict between demo services (front takes the edge in plaintext); certificates from authz's mesh CA (dev root ${mesh.caFile}),
  kept by each instance's trellis agent in ${join(dataDir, 'demo', 'certificates')}/<instance>; xDS through each agent's local relay.
  TRELLIS_LOCAL_MTLS=false runs without.`
    : 'mTLS: off (TRELLIS_LOCAL_MTLS=false).'
}
`);

  const running = demo;
  traffic = setInterval(() => {
    running.callEntry().then(
      (hops) => console.log(`✔ ${new Date().toISOString()}\n    ${describeHops(hops)}`),
      (err: Error) => console.log(`✘ ${new Date().toISOString()} ${err.message}`),
    );
  }, 2_000);
}

main().catch((err: Error) => {
  if (stopping) return; // a signal stopped the startup; stop() exits
  console.error(`local mesh failed: ${err.message}`);
  process.exit(1);
});
