#!/usr/bin/env node
// ext_authz Check throughput against a bare grpc-js unary handler, measured in the same
// run with the same load (h2load), ratios printed: the cache hit and the deny path; then
// the miss path (a pair never seen: Redis miss, RS256 sign, SET) against the same floor.
//   node tools/bench/authz-check.mjs [--requests 100000] [--clients 8] [--streams 32] [--rounds 2] [--misses 2000] [--cpu-prof DIR] [--smoke]
//   diagnostics: [--trace-gc] [--alloc-profile [--heap-profile-dir DIR]] [--floor authz|request|in-process]
//   [--floor-node-options '...'] [--authz-node-options '...'] [--check-worker true|false] [--authz-env 'TRELLIS_X=v ...']
//   [--floor-connection-limits] [--cpu-prof DIR: authz's profiles (main thread and Check worker) in DIR/authz/]
// Needs h2load (Debian: nghttp2-client), etcd and redis-server. Bundles
// src/authz-check.ts with esbuild (it imports startAuthz and the test harness) and runs it.
import { runBundled } from './run-bundled.mjs';

await runBundled('authz-check');
