// One full garbage collection, on demand, without `--expose-gc` on the command line.
//
// Why the control plane wants one: V8 sets the old generation's next limit from what was
// live at its last mark-compact. At start-up that one runs early, while the mesh is still
// being read (at 10,000 services ~40 MB live), so the limit it sets (a few times that) is
// reached in the middle of the first full push, and a mark-compact's incremental and
// concurrent marking then runs beside the push's translation. Collected once after the
// first model is built (~78 MB live), the next limit lies past what the push allocates.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

/** Runs V8's full (mark-compact) collection now: what `global.gc()` does under `--expose-gc`. */
export function collectGarbageNow(): void {
  if (!gc) {
    // The flag exposes `gc` in contexts created after it is set (as jest's leak detector takes it).
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}
