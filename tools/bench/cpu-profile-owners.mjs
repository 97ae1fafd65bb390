#!/usr/bin/env node
// Each server's main-thread time during the first full push, by owner (GC, translation, sessions,
// grpc-js and http2 read and write paths, …), from `xds-fanout.mjs --cpu-prof-dir DIR`'s profiles.
//   node tools/bench/cpu-profile-owners.mjs --dir DIR     (--help: src/cpu-profile-owners.ts's option table)
import { runBundled } from './run-bundled.mjs';

await runBundled('cpu-profile-owners');
