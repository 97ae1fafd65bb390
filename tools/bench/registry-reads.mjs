#!/usr/bin/env node
// Registry reads from memory against the same process's /healthz floor, and registry writes
// against etcd's own put latency, measured in the same run with autocannon.
//   node tools/bench/registry-reads.mjs [--services 1000] [--rounds 3] [--duration 10] [--rate 1000] [--smoke]
//     writes: [--writes-only] [--write-rounds N] [--writes 300] [--write-warmup 60 (blocks of 10 of each, not counted)]
// Needs etcd. Bundles src/registry-reads.ts with esbuild (it imports startRegistry and the test harness) and runs it.
import { runBundled } from './run-bundled.mjs';

await runBundled('registry-reads');
