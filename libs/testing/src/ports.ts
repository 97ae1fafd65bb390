import { createServer } from 'node:net';

/** A loopback TCP port the OS just handed out (bound to port 0, then released). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
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
