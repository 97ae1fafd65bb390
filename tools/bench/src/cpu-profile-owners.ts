// The first full push's main-thread time by owner (cpu-profile.ts), for each server profiled by
// `xds-fanout.mjs --cpu-prof-dir DIR`: the floor's and the control plane's, one after the other.
//   node tools/bench/cpu-profile-owners.mjs --dir DIR
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseBenchArgs } from './bench-cli';
import { sourceMapping, timeByOwner, type CpuProfile } from './cpu-profile';

/** Each server's profile in `dir` with its push marks (marks-<pid>.json), by pid. */
function profiledServers(dir: string): { pid: string; profile: string; from: number; to: number }[] {
  const files = readdirSync(dir);
  return files.flatMap((file) => {
    const pid = /^marks-(\d+)\.json$/.exec(file)?.[1];
    if (!pid) return [];
    const marks = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Record<string, number[] | undefined>;
    const profile = files.find((f) => f.endsWith('.cpuprofile') && f.split('.')[3] === pid);
    const from = marks['push start']?.[0];
    const to = marks['push end']?.[0];
    return profile && from !== undefined && to !== undefined ? [{ pid, profile: join(dir, profile), from, to }] : [];
  });
}

function main(): void {
  const args = parseBenchArgs(
    {
      name: 'cpu-profile-owners',
      summary:
        "Splits each server's main-thread time during the first full push, from xds-fanout.mjs --cpu-prof-dir DIR's " +
        'profiles and marks, by owner (GC, translation, sessions, grpc-js and http2 read and write paths, …).',
    },
    { dir: { type: 'string', help: 'The directory xds-fanout.mjs --cpu-prof-dir wrote.' } },
  );
  if (!args.dir) {
    process.stderr.write('cpu-profile-owners: --dir is required\n');
    process.exit(2);
  }
  const sourceOf = sourceMapping();
  for (const server of profiledServers(args.dir)) {
    const profile = JSON.parse(readFileSync(server.profile, 'utf8')) as CpuProfile;
    const times = timeByOwner(profile, server.from, server.to, sourceOf);
    const busy = [...times.values()].reduce((a, b) => a + b, 0);
    console.log(`\npid ${server.pid}: push ${((server.to - server.from) / 1000).toFixed(0)} ms, main thread busy ${busy.toFixed(0)} ms`);
    for (const [owner, ms] of [...times].sort((a, b) => b[1] - a[1]))
      console.log(`${ms.toFixed(0).padStart(8)} ms ${((100 * ms) / busy).toFixed(1).padStart(5)} %  ${owner}`);
  }
}

main();
