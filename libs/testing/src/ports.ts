import { createServer } from 'node:net';

/**
 * Ports this process handed out. The OS may give a just-released port to the next bind(0) again
 * (20 asks in a row saw a repeat in about 1 run of 50 here), and two servers of one test would then
 * race to listen on it.
 */
const handedOut = new Set<number>();

/** A loopback TCP port the OS just handed out (bound to port 0, then released); never one this process handed out before. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await bindAndRelease(host);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error('no free port this process has not handed out already');
}

function bindAndRelease(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
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
