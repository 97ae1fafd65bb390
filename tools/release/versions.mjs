// One version for everything a release ships: the images (tagged with it), the Helm charts
// (version and appVersion, the umbrella's subchart pins, the sidecar's CLI image tags)
// and the CLI (`trellis --version`). The root package.json's version is the source; these
// are every other place it is written.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const SEMVER = /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/;
const V = '(\\d+\\.\\d+\\.\\d+(?:-[0-9A-Za-z.-]+)?)';

const chart = (dir) => ({
  file: `${dir}/Chart.yaml`,
  patterns: [new RegExp(`^version: ${V}$`, 'm'), new RegExp(`^appVersion: '${V}'$`, 'm')],
});

/** Each file and the patterns whose first group is the version. */
export const VERSIONED = [
  { file: 'package.json', patterns: [new RegExp(`^  "version": "${V}",$`, 'm')] },
  chart('deploy/helm/trellis'),
  { file: 'deploy/helm/trellis/Chart.yaml', patterns: [new RegExp(`^    version: ${V}$`, 'gm')] },
  chart('deploy/helm/trellis/charts/registry'),
  chart('deploy/helm/trellis/charts/control-plane'),
  chart('deploy/helm/trellis/charts/authz'),
  chart('deploy/helm/trellis-sidecar'),
  {
    file: 'deploy/helm/trellis-sidecar/templates/_sidecar.tpl',
    patterns: [new RegExp(`"bootstrapImage" "trellis/cli:${V}"`), new RegExp(`"image" "trellis/cli:${V}"`)],
  },
  { file: 'apps/cli/src/program.ts', patterns: [new RegExp(`\\.version\\('${V}'\\)`)] },
  // Where workloads are shown (and tested) pinning the sidecar library.
  { file: 'deploy/helm/trellis-sidecar/README.md', patterns: [new RegExp(`^  - name: trellis-sidecar\\n    version: ${V}$`, 'm')] },
  {
    file: 'tools/deploy-tests/fixtures/sidecar-consumer/Chart.yaml',
    patterns: [new RegExp(`^  - name: trellis-sidecar\\n    version: ${V}$`, 'm')],
  },
];

export function assertSemver(version) {
  if (!SEMVER.test(version)) throw new Error(`"${version}" is not a semantic version (MAJOR.MINOR.PATCH[-pre])`);
}

/** `file: found x, expected y` for every place that disagrees with `version` (or lost its marker). */
export function versionMismatches(root, version) {
  const problems = [];
  for (const { file, patterns } of VERSIONED) {
    const text = readFileSync(join(root, file), 'utf8');
    for (const pattern of patterns) {
      const found = [...text.matchAll(new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`))];
      if (found.length === 0) problems.push(`${file}: no ${pattern} (the release tooling must be told where the version moved)`);
      for (const match of found) if (match[1] !== version) problems.push(`${file}: ${match[1]}, expected ${version}`);
    }
  }
  return problems;
}

/** Writes `version` into every versioned place. */
export function setVersion(root, version) {
  assertSemver(version);
  for (const { file, patterns } of VERSIONED) {
    const path = join(root, file);
    let text = readFileSync(path, 'utf8');
    for (const pattern of patterns) {
      const global = new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`);
      text = text.replace(global, (whole, old) => whole.replace(old, version));
    }
    writeFileSync(path, text);
  }
}

/** The CHANGELOG.md section for `version`, or undefined. */
export function changelogSection(root, version) {
  const text = readFileSync(join(root, 'CHANGELOG.md'), 'utf8');
  const escaped = version.replace(/[.+-]/g, '\\$&');
  return new RegExp(`^## \\[${escaped}\\][^\\n]*\\n([\\s\\S]*?)(?=^## \\[|(?![\\s\\S]))`, 'm').exec(text)?.[1]?.trim() || undefined;
}
