import type { Socket } from 'node:net';

/**
 * Resolves when `socket` is closed (by either side); rejects if it is still open after `withinMs`.
 * Reads the socket meanwhile: a socket nobody reads never sees the peer's FIN and stays 'open'.
 */
export function socketClosed(socket: Socket, withinMs = 60_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (socket.destroyed) return resolve();
    const timer = setTimeout(() => reject(new Error(`still open after ${withinMs} ms`)), withinMs);
    socket.on('error', () => undefined);
    socket.resume();
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
