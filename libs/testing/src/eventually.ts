export interface EventuallyOptions {
  /** Time between probes, 20 ms by default; a probe that costs a round trip through processes may poll less often. */
  intervalMs?: number;
  /**
   * Whether a probe that throws means "not yet" (a server still starting refuses connections): then it is probed
   * again until the deadline, whose error names the last throw. By default a throw fails the wait at once.
   */
  retryErrors?: boolean;
  /** What else to say when the deadline passes, e.g. the recent output of the processes under test. */
  diagnose?: () => string;
}

/**
 * Resolves with what `probe` returns once it is neither undefined nor false, polling every `intervalMs`; the
 * deadline is generous, so a loaded machine is slow, not failing. Rejects after it, naming `what`.
 */
export async function eventually<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 30_000,
  { intervalMs = 20, retryErrors = false, diagnose }: EventuallyOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  let threw = false;
  for (;;) {
    let value: T | undefined | false = undefined;
    try {
      value = await probe();
      threw = false;
    } catch (err) {
      if (!retryErrors) throw err;
      [lastError, threw] = [err, true];
    }
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) {
      const last = threw ? ` (the last probe threw: ${errorText(lastError)})` : '';
      const more = diagnose ? `\n${diagnose()}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last}${more}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));
