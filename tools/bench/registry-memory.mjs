#!/usr/bin/env node
// The registry's memory over a long churn of writes and reads: RSS and heap after forced GC at
// checkpoints, and the heap snapshots of the first and last checkpoints compared by constructor.
//   node tools/bench/registry-memory.mjs [options]     (--help lists them, from src/registry-memory.ts's option table)
// Needs etcd. Bundles src/registry-memory.ts with esbuild (it imports startRegistry and the test harness) and runs it.
import { runBundled } from './run-bundled.mjs';

await runBundled('registry-memory');
