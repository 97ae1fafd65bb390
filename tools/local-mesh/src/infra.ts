// etcd and Redis for the local mesh: the Debian binaries, data under the mesh's
// data folder (gitignored `.trellis/`), so a restart keeps what was registered.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { findBinary } from '@trellis/testing';
import { httpOk, startProcess, waitUntil, type ManagedProcess, type StartOptions } from './processes';

export interface Infra {
  etcdEndpoint: string;
  redisUrl: string;
  processes: ManagedProcess[];
}

/** The executable, found the way the test harness finds it; a clear install hint when missing. */
function requireBinary(name: string): string {
  const path = findBinary(name);
  if (!path) {
    throw new Error(
      `${name} not found: run \`node tools/setup/ensure-system-deps.mjs --for=start\` (Debian: apt-get install etcd-server redis-server)`,
    );
  }
  return path;
}

export async function startInfra(options: {
  dataDir: string;
  etcdPort: number;
  etcdPeerPort: number;
  redisPort: number;
  onLine?: StartOptions['onLine'];
}): Promise<Infra> {
  const etcdDir = join(options.dataDir, 'etcd');
  const redisDir = join(options.dataDir, 'redis');
  mkdirSync(etcdDir, { recursive: true });
  mkdirSync(redisDir, { recursive: true });

  const etcdEndpoint = `http://127.0.0.1:${options.etcdPort}`;
  const etcd = startProcess({
    name: 'etcd',
    command: requireBinary('etcd'),
    args: [
      '--name',
      'trellis-local',
      '--data-dir',
      etcdDir,
      '--listen-client-urls',
      etcdEndpoint,
      '--advertise-client-urls',
      etcdEndpoint,
      '--listen-peer-urls',
      `http://127.0.0.1:${options.etcdPeerPort}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${options.etcdPeerPort}`,
      '--initial-cluster',
      `trellis-local=http://127.0.0.1:${options.etcdPeerPort}`,
      '--log-level',
      'warn',
    ],
    onLine: options.onLine,
  });
  const redis = startProcess({
    name: 'redis',
    command: requireBinary('redis-server'),
    args: [
      '--port',
      String(options.redisPort),
      '--bind',
      '127.0.0.1',
      '--dir',
      redisDir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--loglevel',
      'warning',
    ],
    onLine: options.onLine,
  });
  await waitUntil('etcd', () => httpOk(`${etcdEndpoint}/health`), { process: etcd });
  await waitUntil('redis', () => redisPing(options.redisPort), { process: redis });
  return { etcdEndpoint, redisUrl: `redis://127.0.0.1:${options.redisPort}`, processes: [etcd, redis] };
}

async function redisPing(port: number): Promise<boolean> {
  const { createConnection } = await import('node:net');
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'));
    socket.setTimeout(1_000, () => (socket.destroy(), resolve(false)));
    socket.once('data', (data) => (socket.end(), resolve(data.toString().startsWith('+PONG'))));
    socket.once('error', () => resolve(false));
  });
}
