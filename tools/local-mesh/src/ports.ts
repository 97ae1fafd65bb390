import { createServer } from 'node:net';

/**
 * Ports this process handed out. The OS may give a just-released port to the next bind(0) again
 * (20 asks in a row saw a repeat in about 1 run of 50 here), and two of our processes would
 * then race to listen on it: a mesh start that fails for no reason of its own.
 */
const handedOut = new Set<number>();

/** `preferred` if it is free on 127.0.0.1, else a port the OS picks; never one this process handed out before. */
export async function freePort(preferred = 0): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = preferred && attempt === 0 ? await bind(preferred).catch(() => bind(0)) : await bind(0);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error('no free port this process has not handed out already');
}

function bind(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
