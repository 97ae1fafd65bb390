#!/usr/bin/env node
// Control-plane fan-out: the time from the etcd write of one change to `hub` until
// each affected ADS stream has its new version, against a bare grpc-js
// bidi-stream server that pushes one small message per affected stream on the same
// etcd watch event (the floor), measured in the same run, ratio printed; next to it
// the first full push to all streams, responses and resource bytes per change, and
// each server's CPU-seconds per change, peak RSS and event-loop delay.
//   node tools/bench/xds-fanout.mjs [options]     (--help lists them, from src/xds-fanout.ts's option table)
// Profiles: envoy (SotW sidecars: CDS+LDS, then EDS/RDS, ACKs), clusters (SotW, CDS only), delta
// (the envoy subscriptions over Delta ADS). --smoke: tiny sizes and every profile, in seconds (npm test runs it).
// The simulated Envoys are one process, so they are kept cheap per response, the same for both servers: their gRPC
// client is node:http2 with gRPC's framing (src/grpc-wire-client.ts: headers, 5-byte message prefix, trailers' status,
// Envoy's 256 MiB windows), not grpc-js's client. Of a response they read (src/xds-wire.ts scans the wire format, no
// full decode) its type, version, nonce, each resource's byte length, and for CDS and LDS the resources' names (the
// EDS and RDS follow-ups); Delta also each resource's name and version and the removed names. Every response is
// ACKed, its version and nonce echoed.
// The simulated Envoys reconnect and re-subscribe, as Envoy does, when the control plane sends GOAWAY at its max
// connection age (30 min by default; --max-connection-age-ms sets it); the summary counts their reconnects.
// Needs etcd. Bundles src/xds-fanout.ts with esbuild (it imports startControlPlane
// and @trellis/testing) and runs it; exits non-zero only if a push is missing, extra or stale.
import { runBundled } from './run-bundled.mjs';

await runBundled('xds-fanout');
