// A package-lock.json for one app's bundle: the workspace lockfile cut down to the packages
// reachable from the dependencies the bundle imports, at exactly the versions, tarballs and
// integrity hashes the workspace pins. With it the image runs `npm ci`, which refuses a
// lockfile out of sync with package.json; the workspace's own lockfile describes another
// package.json, so `npm ci` cannot use it directly.

/** Where npm resolves `name` from the package installed at `from` (node's node_modules walk). */
function resolveFrom(packages, from, name) {
  let dir = from;
  for (;;) {
    const candidate = `${dir ? `${dir}/` : ''}node_modules/${name}`;
    if (packages[candidate]) return candidate;
    if (!dir) return undefined;
    const up = dir.lastIndexOf('/node_modules/');
    dir = up === -1 ? '' : dir.slice(0, up);
  }
}

/**
 * @param {{lockfileVersion: number, packages: Record<string, any>}} lock the workspace lockfile
 * @param {{name: string, version: string, dependencies: Record<string, string>}} pkg the bundle's package.json
 */
export function pruneLockfile(lock, pkg) {
  if (lock.lockfileVersion < 2) throw new Error(`package-lock.json v${lock.lockfileVersion}: need lockfile v2 or v3`);
  const { packages } = lock;
  const kept = new Map();
  const visit = (from, name, optional) => {
    const path = resolveFrom(packages, from, name);
    if (!path) {
      if (optional) return;
      throw new Error(`${name} (needed by ${from || pkg.name}) is not in package-lock.json: run npm install`);
    }
    if (kept.has(path)) return;
    const entry = packages[path];
    // What production installs need: no dev flags (they are relative to the workspace).
    const { dev: _dev, devOptional: _devOptional, peer: _peer, ...clean } = entry;
    kept.set(path, clean);
    for (const dep of Object.keys(entry.dependencies ?? {})) visit(path, dep, false);
    for (const dep of Object.keys(entry.optionalDependencies ?? {})) visit(path, dep, true);
    // Peers: kept where the workspace install has them (npm installs non-optional ones).
    for (const dep of Object.keys(entry.peerDependencies ?? {})) visit(path, dep, true);
  };
  for (const name of Object.keys(pkg.dependencies)) visit('', name, false);
  const sorted = Object.fromEntries([...kept].sort(([a], [b]) => a.localeCompare(b)));
  return {
    name: pkg.name,
    version: pkg.version,
    lockfileVersion: 3,
    requires: true,
    packages: { '': { name: pkg.name, version: pkg.version, dependencies: pkg.dependencies }, ...sorted },
  };
}
