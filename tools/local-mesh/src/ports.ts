import { freePort as anyFreePort } from '@trellis/testing';
import { createServer } from 'node:net';

/** `preferred` if it is free on 127.0.0.1, else a free port (see @trellis/testing's freePort: never one handed out twice). */
export async function freePort(preferred = 0): Promise<number> {
  if (preferred && (await isFree(preferred))) return preferred;
  return anyFreePort();
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
