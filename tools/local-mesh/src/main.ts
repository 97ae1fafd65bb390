// `npm start`: the whole mesh on this machine — etcd, Redis, registry, control
// plane, authz — plus the demo services, with traffic flowing every two seconds.
// Ctrl-C stops everything.
import { join } from 'node:path';
import { describeHops, startDemo, writeDemoCredentials } from './demo/demo';
import { startLocalMesh, WORKSPACE_ROOT } from './mesh';

async function main(): Promise<void> {
  const dataDir = process.env['TRELLIS_LOCAL_DATA_DIR'] ?? join(WORKSPACE_ROOT, '.trellis');
  const creds = writeDemoCredentials(dataDir);
  const quiet = process.env['TRELLIS_LOCAL_VERBOSE'] !== 'true';
  // App logs go to .trellis/logs via the prefix printer only when verbose; errors always show.
  const onLine = (name: string, line: string) => {
    if (!quiet || /"level":(50|60)|error|Error/.test(line)) process.stdout.write(`[${name}] ${line}\n`);
  };

  console.log('Starting the Trellis local mesh (data in %s)…', dataDir);
  const mesh = await startLocalMesh({
    dataDir,
    preferConventionalPorts: true,
    onLine,
    appEnv: { authz: { TRELLIS_TOKEN_ENDPOINT_CREDENTIALS: creds.file } },
  });
  const demo = await startDemo(mesh, creds, { demoServiceScript: join(__dirname, 'demo-service.js'), onLine });

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.log('\nStopping…');
    clearInterval(traffic);
    await demo.stop();
    await mesh.stop();
    console.log('Stopped.');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());

  console.log(`
Trellis is up.
  registry UI        ${mesh.registryUrl}/            (admin token: ${mesh.adminToken})
  registry API       ${mesh.registryUrl}/api/v1/services   OpenAPI: ${mesh.registryUrl}/openapi.json
  topology           ${mesh.registryUrl}/topology
  control plane      xDS ${mesh.controlPlane.xdsAddress}   ${mesh.controlPlane.httpUrl}/debug/config_dump?node=front-1
  authz              gRPC ${mesh.authz.grpcAddress}   JWKS ${mesh.authz.httpUrl}/.well-known/jwks.json
  metrics            ${mesh.registryUrl}/metrics  ${mesh.controlPlane.httpUrl}/metrics  ${mesh.authz.httpUrl}/metrics
  etcd ${mesh.etcdEndpoint}   redis ${mesh.redisUrl}
Demo traffic (edge → front → service-a → service-b, service-c) every 2 s; Ctrl-C stops everything.
`);

  const traffic = setInterval(() => {
    demo.callEntry().then(
      (hops) => console.log(`✔ ${new Date().toISOString()}\n    ${describeHops(hops)}`),
      (err: Error) => console.log(`✘ ${new Date().toISOString()} ${err.message}`),
    );
  }, 2_000);
}

main().catch((err: Error) => {
  console.error(`local mesh failed: ${err.message}`);
  process.exit(1);
});
