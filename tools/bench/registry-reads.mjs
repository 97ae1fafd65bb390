#!/usr/bin/env node
// Registry reads from memory against the same process's /healthz floor, and registry writes
// against etcd's own put latency, measured in the same run with autocannon.
//   node tools/bench/registry-reads.mjs [options]     (--help lists them, from src/registry-reads.ts's option table)
// Needs etcd. Bundles src/registry-reads.ts with esbuild (it imports startRegistry and the test harness) and runs it.
import { runBundled } from './run-bundled.mjs';

await runBundled('registry-reads');
