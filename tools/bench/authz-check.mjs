#!/usr/bin/env node
// ext_authz Check throughput against a bare grpc-js unary handler, measured in the same
// run with the same load (h2load), ratios printed: the cache hit and the deny path; then
// the miss path (a pair never seen: Redis miss, RS256 sign, SET) against the same floor.
//   node tools/bench/authz-check.mjs [options]     (--help lists them, from src/authz-check.ts's option table)
// Needs h2load (Debian: nghttp2-client), etcd and redis-server. Bundles
// src/authz-check.ts with esbuild (it imports startAuthz and the test harness) and runs it.
import { runBundled } from './run-bundled.mjs';

await runBundled('authz-check');
