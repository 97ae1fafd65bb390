// A process busy as an overloaded server is: long synchronous turns, with the event
// loop's timers, socket reads and immediates running only between them.

/**
 * Runs `turns` synchronous turns of `turnMs`, each started by setImmediate; stops early
 * once `stop()` says so. Resolves with the number of turns run.
 */
export function busyTurns(turns: number, turnMs: number, stop: () => boolean = () => false): Promise<number> {
  return new Promise((resolve) => {
    let run = 0;
    const turn = () => {
      if (run === turns || stop()) return resolve(run);
      run += 1;
      const end = Date.now() + turnMs;
      while (Date.now() < end) {
        // busy
      }
      setImmediate(turn);
    };
    setImmediate(turn);
  });
}
