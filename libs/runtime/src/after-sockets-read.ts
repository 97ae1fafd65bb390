// A timeout for "the peer did not answer" that a busy process does not trip on its own.
// Node runs due timers before its poll phase reads sockets, so after a synchronous turn
// longer than a plain setTimeout's delay, the timer fires before an answer that arrived
// during the turn is read. setImmediate callbacks run after the poll phase: hopping
// through two of them lets the process read its sockets (twice, as an answer may need a
// second read to complete) before the timeout is called.

/** Calls `onTimeout` once `ms` have passed and this process has read its sockets since; returns a cancel. */
export function afterSocketsRead(ms: number, onTimeout: () => void, opts: { unref?: boolean } = {}): () => void {
  let cancelled = false;
  let immediate: NodeJS.Immediate | undefined;
  const timer = setTimeout(() => {
    immediate = setImmediate(() => {
      immediate = setImmediate(() => {
        if (!cancelled) onTimeout();
      });
    });
  }, ms);
  if (opts.unref) timer.unref();
  return () => {
    cancelled = true;
    clearTimeout(timer);
    if (immediate) clearImmediate(immediate);
  };
}
