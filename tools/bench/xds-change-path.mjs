#!/usr/bin/env node
// The control plane's change path in one process (no etcd, no sockets): from a change of
// hub's record to the last affected stream's CDS encoded, then the ACKs and EDS requests
// that follow, per change, median of rounds. Alternate it A/B against another worktree.
//   node tools/bench/xds-change-path.mjs [options]     (--help lists them, from src/xds-change-path.ts's option table)
import { runBundled } from './run-bundled.mjs';

await runBundled('xds-change-path');
