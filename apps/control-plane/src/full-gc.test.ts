import { setImmediate as nextTurn } from 'node:timers/promises';
import { collectGarbageNow } from './full-gc';

it('runs a full collection: an object reachable only through a WeakRef is gone after it', async () => {
  let target: object | undefined = { payload: new Array(1000).fill('x') };
  const ref = new WeakRef(target);
  target = undefined;
  // A WeakRef's target is kept until the job that created or read it ends.
  await nextTurn();
  collectGarbageNow();
  expect(ref.deref()).toBeUndefined();
  // A second call uses the same function (the flag is set once).
  expect(() => collectGarbageNow()).not.toThrow();
});
