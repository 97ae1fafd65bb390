import { createServer } from 'node:net';

/** `preferred` if it is free on 127.0.0.1, else a port the OS picks. */
export async function freePort(preferred = 0): Promise<number> {
  try {
    return await bind(preferred);
  } catch {
    return bind(0);
  }
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
