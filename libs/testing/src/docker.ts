import { existsSync } from 'node:fs';

/**
 * Whether a Docker engine answers, decided quickly: no DOCKER_HOST and no socket
 * means no (the common case on dev VMs); otherwise testcontainers gets a few seconds.
 */
export async function dockerAvailable(timeoutMs = 3_000): Promise<boolean> {
  if (process.env['TRELLIS_TEST_NO_DOCKER'] === '1') return false;
  if (!process.env['DOCKER_HOST'] && !existsSync('/var/run/docker.sock')) return false;
  const { getContainerRuntimeClient } = await import('testcontainers');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([getContainerRuntimeClient().then(() => true as const), timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
