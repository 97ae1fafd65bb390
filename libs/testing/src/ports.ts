import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * Ports this process handed out. The OS may give a just-released port to the next bind(0) again
 * (20 asks in a row saw a repeat in about 1 run of 50 here), and two servers of one test would then
 * race to listen on it.
 */
const handedOut = new Set<number>();

/** The lowest port handed out; below it live the conventional ports (etcd 2379, Redis 6379, 8080…). */
const LOWEST_PORT = 10_000;

/**
 * Linux gives outgoing connections their source ports from this range (32768–60999 by default).
 * A port from bind(0) comes from it too, so between its release and the server's bind any process's
 * connect() may take it (EADDRINUSE in a fresh-clone CI run). Ports below the range are safe from that.
 */
function ephemeralRangeStart(): number | undefined {
  try {
    const start = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(start) && start - LOWEST_PORT >= 2_000 ? start : undefined;
  } catch {
    return undefined; // not Linux: what the OS picks
  }
}
const belowEphemeral = ephemeralRangeStart();

/**
 * A loopback TCP port free right now (bound, then released), outside the range outgoing connections
 * take their source ports from where the OS says what that is; never one this process handed out before.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const asked = belowEphemeral !== undefined && attempt < 90 ? randomInt(LOWEST_PORT, belowEphemeral) : 0;
    const port = await bindAndRelease(host, asked).catch((error: NodeJS.ErrnoException) => {
      if (asked !== 0 && (error.code === 'EADDRINUSE' || error.code === 'EACCES')) return undefined;
      throw error;
    });
    if (port === undefined || handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error('no free port this process has not handed out already');
}

function bindAndRelease(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(port, host, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('the OS returned no TCP port'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}
