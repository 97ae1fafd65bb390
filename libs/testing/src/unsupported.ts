/**
 * The stop/start/restart of a server a suite does not own (a shared one or a
 * container): rejects with a hint to check `canRestart` instead of failing oddly.
 */
export function unsupported(what: string, why: string): () => Promise<never> {
  return () => Promise.reject(new Error(`${what} is not supported ${why}; check \`canRestart\` and skip fault tests`));
}
