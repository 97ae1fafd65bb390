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
  /** Starts a stopped etcd or Redis again (same ports, same data) and waits until it answers: the fault suite's restarts. */
  starters: Record<'etcd' | 'redis', () => Promise<ManagedProcess>>;
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
  const etcdOptions: StartOptions = {
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
  };
  const redisOptions: StartOptions = {
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
  };
  const starters: Infra['starters'] = {
    etcd: async () => {
      const etcd = startProcess(etcdOptions);
      await waitUntil('etcd', () => httpOk(`${etcdEndpoint}/health`), { process: etcd });
      return etcd;
    },
    redis: async () => {
      const redis = startProcess(redisOptions);
      await waitUntil('redis', () => redisPing(options.redisPort), { process: redis });
      return redis;
    },
  };
  const [etcd, redis] = await Promise.all([starters.etcd(), starters.redis()]);
  return { etcdEndpoint, redisUrl: `redis://127.0.0.1:${options.redisPort}`, processes: [etcd, redis], starters };
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
