#!/usr/bin/env node
// The control plane's change path in one process (no etcd, no sockets): from a change of
// hub's record to the last affected stream's CDS encoded, then the ACKs and EDS requests
// that follow, per change, median of rounds. Alternate it A/B against another worktree.
//   node tools/bench/xds-change-path.mjs [--services 1000] [--proxies 1000] [--rounds 60] [--hub-every 3] [--slice-ms 20]
import { runBundled } from './run-bundled.mjs';

await runBundled('xds-change-path');
