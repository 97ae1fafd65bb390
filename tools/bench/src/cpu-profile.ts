// A V8 CPU profile's main-thread time by owner: which part of an xDS server's work each
// sample belongs to (GC, translation, the sessions, grpc-js's and node:http2's read and write
// paths, stream set-up, …), so that the floor's and the control plane's time in the same
// window can be set side by side and the control plane's extra time named
// (cpu-profile-owners.ts prints it for xds-fanout.mjs --cpu-prof-dir).
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The parts of a V8 `.cpuprofile` read here. */
export interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame; children?: number[] }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

/** A frame as the rules see it: its function and where it comes from (a source path, a package path, `node:…`). */
export interface Frame {
  fn: string;
  source: string;
}

/** An owner and whether a sample's stack (leaf first) is its work. */
interface OwnerRule {
  owner: string;
  test: (stack: readonly Frame[]) => boolean;
}

const anyFrame = (stack: readonly Frame[], fn: RegExp, source?: RegExp) =>
  stack.some((f) => fn.test(f.fn) && (!source || source.test(f.source)));

/**
 * The owners, first match wins: what a sample is part of, from the outermost activity that names it (translation
 * under a session's pump is translation; grpc-js's write path under a session's `transmit` is the write path).
 */
export const OWNER_RULES: readonly OwnerRule[] = [
  { owner: 'GC', test: (s) => s[0]?.fn === '(garbage collector)' },
  { owner: '(program)', test: (s) => s[0]?.fn === '(program)' },
  { owner: 'translation', test: (s) => anyFrame(s, /^(buildProxyResources|sidecarResources)$/) },
  { owner: 'snapshot assembly and check', test: (s) => anyFrame(s, /^(toSnapshot|snapshotInconsistencies)$/) },
  { owner: 'proxy-status writer', test: (s) => anyFrame(s, /./, /xds\/proxy-status-writer/) },
  { owner: 'metrics', test: (s) => anyFrame(s, /./, /control-plane\/src\/metrics/) },
  { owner: 'responses: headers', test: (s) => anyFrame(s, /^sendMetadata$/) },
  { owner: 'responses: grpc-js and http2 write path', test: (s) => anyFrame(s, /^(transmit|sendMessage)$/) },
  { owner: 'requests: decoding', test: (s) => anyFrame(s, /^decode(Delta)?DiscoveryRequest$/) },
  {
    owner: 'sessions (pumps, requests, snapshots)',
    test: (s) => anyFrame(s, /./, /xds\/(sotw-session|delta-session|ads-session|session-common|push-order)/),
  },
  { owner: 'snapshot cache, other', test: (s) => anyFrame(s, /./, /xds\/snapshot-cache/) },
  { owner: 'stream set-up and routing (ads-server)', test: (s) => anyFrame(s, /./, /xds\/(ads-server|stream-auth|stream-log)/) },
  {
    owner: 'stream set-up (grpc-js)',
    test: (s) => anyFrame(s, /^(_streamHandler|_channelzHandler|getServerInterceptingCall|handleBidiStreaming)$/),
  },
  {
    owner: 'requests: grpc-js and http2 read path',
    test: (s) =>
      anyFrame(
        s,
        /^(onStreamRead|decompressAndMaybePush|handleDataFrame|maybePushNextMessage|onReceiveMessage|readableAddChunk.*|emitReadable_|maybeReadMore_|resume_)$/,
      ),
  },
  {
    owner: 'write callbacks',
    test: (s) => anyFrame(s, /^(onwrite|afterWrite|afterWriteTick|onWriteComplete|writeGeneric|writevGeneric)$/),
  },
  { owner: 'http2 sessions and headers', test: (s) => anyFrame(s, /./, /^node:internal\/http2\//) },
  // Last: a tick, immediate or timer whose stack names none of the above (promise reactions, the event loop's own work).
  {
    owner: 'ticks, immediates and timers, unattributed',
    test: (s) => anyFrame(s, /^(processTicksAndRejections|runMicrotasks|processImmediate|listOnTimeout)$/),
  },
];

/** Where a frame's code comes from: the source file for bundled code, else the script's URL. */
export type SourceOf = (frame: CallFrame) => string;

/**
 * Busy main-thread time (ms) by owner between `fromUs` and `toUs` on the profile's clock, each sample counted for
 * the time until the next one (as DevTools does); idle samples left out. Stacks no rule claims go to "other".
 */
export function timeByOwner(profile: CpuProfile, fromUs: number, toUs: number, sourceOf: SourceOf): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const child of n.children ?? []) parentOf.set(child, n.id);
  const ownerOfNode = new Map<number, string>();
  const ownerOf = (id: number): string => {
    let owner = ownerOfNode.get(id);
    if (owner === undefined) {
      const stack: Frame[] = [];
      for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
        const { callFrame } = byId.get(at)!;
        stack.push({ fn: callFrame.functionName, source: sourceOf(callFrame) });
      }
      owner = stack[0]?.fn === '(idle)' ? '' : (OWNER_RULES.find((rule) => rule.test(stack))?.owner ?? 'other');
      ownerOfNode.set(id, owner);
    }
    return owner;
  };
  const times = new Map<string, number>();
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i]!;
    if (at < fromUs || at > toUs) continue;
    const owner = ownerOf(profile.samples[i]!);
    if (owner === '') continue;
    times.set(owner, (times.get(owner) ?? 0) + (profile.timeDeltas[i + 1] ?? 0) / 1000);
  }
  return times;
}

/** Maps bundled frames to their source files through the bundle's `.map` beside it; others keep their URL. */
export function sourceMapping(): SourceOf {
  const maps = new Map<string, SourceMap | undefined>();
  return (frame) => {
    if (!frame.url.startsWith('file://')) return frame.url;
    const path = fileURLToPath(frame.url);
    if (!maps.has(path))
      maps.set(path, existsSync(`${path}.map`) ? new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8'))) : undefined);
    const entry = maps.get(path)?.findEntry(frame.lineNumber, frame.columnNumber);
    const source = entry && 'originalSource' in entry ? entry.originalSource : path;
    // Short and stable: the workspace path from apps/, libs/ or tools/ on, a package from its name on.
    return source.replace(/^.*\/node_modules\//, '').replace(/^.*\/(apps|libs|tools)\//, '$1/');
  };
}
