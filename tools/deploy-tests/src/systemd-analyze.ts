// Runs `systemd-analyze verify` on our units inside a throwaway root: the host's
// stock units (sysinit.target & co.) plus ours in /etc/systemd/system, so verify sees
// them exactly as installed, drop-ins included. Verify also insists that every
// Exec*= binary exists; the units name their production paths (/usr/bin/node,
// /usr/bin/envoy, /usr/bin/curl), which this machine need not have, so the root gets
// a placeholder executable at each of those paths.
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const INSTALL_HINT =
  'systemd-analyze is missing: install the Debian package "systemd" (sudo apt-get install -y systemd), or run `node tools/setup/ensure-system-deps.mjs`';

export function systemdAnalyze(): string {
  for (const candidate of ['/usr/bin/systemd-analyze', '/bin/systemd-analyze']) if (existsSync(candidate)) return candidate;
  const which = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) return which.stdout.trim();
  throw new Error(INSTALL_HINT);
}

export interface VerifyRoot {
  dir: string;
  remove(): void;
}

/** A root with the host's stock units, `units` (file name → text), `dropIns` (unit → file name → text) and placeholder binaries. */
export function createVerifyRoot(options: {
  units: Record<string, string>;
  dropIns?: Record<string, Record<string, string>>;
  binaries: string[];
}): VerifyRoot {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-systemd-root-'));
  const stock = ['/usr/lib/systemd/system', '/lib/systemd/system'].find((p) => existsSync(p));
  if (!stock) throw new Error('no stock systemd units found (/usr/lib/systemd/system): is systemd installed?');
  cpSync(stock, join(dir, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });

  const etc = join(dir, 'etc/systemd/system');
  mkdirSync(etc, { recursive: true });
  for (const [name, text] of Object.entries(options.units)) writeFileSync(join(etc, name), text);
  for (const [unit, files] of Object.entries(options.dropIns ?? {})) {
    mkdirSync(join(etc, `${unit}.d`), { recursive: true });
    for (const [name, text] of Object.entries(files)) writeFileSync(join(etc, `${unit}.d`, name), text);
  }
  for (const binary of options.binaries) {
    const path = join(dir, binary);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, '#!/bin/sh\nexit 0\n');
    chmodSync(path, 0o755);
  }
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface AnalyzeResult {
  status: number | null;
  /** stdout and stderr together: verify reports problems (even ignored ones) on stderr. */
  output: string;
}

export function verifyUnit(root: VerifyRoot, unitName: string): AnalyzeResult {
  const result = spawnSync(systemdAnalyze(), ['verify', `--root=${root.dir}`, '--man=no', unitName], { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}`.trim() };
}

/** `systemd-analyze security --offline`: the exposure score (0 safest, 10 worst) of a unit file. */
export function exposureLevel(unitPath: string): number {
  const result = spawnSync(systemdAnalyze(), ['security', '--offline=yes', '--no-pager', unitPath], { encoding: 'utf8', timeout: 60_000 });
  const match = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(`${result.stdout}${result.stderr}`);
  if (!match) throw new Error(`systemd-analyze security printed no exposure level:\n${result.stdout}${result.stderr}`);
  return Number(match[1]);
}
