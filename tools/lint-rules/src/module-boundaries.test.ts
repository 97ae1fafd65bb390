// Every boundary eslint.config.mjs draws, crossed on purpose: a file that crosses
// it fails lint, and the same import where it is allowed passes. The files are
// virtual (linted as if they lived at `filePath`), so nothing is written.
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '../../..');
/** lint-virtual-files.mjs writes its JSON after this line. */
const RESULTS_MARKER = '\n--- lint results ---\n';

interface Case {
  what: string;
  filePath: string;
  code: string;
  /** What the expected error says; undefined when the file must lint clean. */
  error?: RegExp;
}

const TESTING = "import { startEtcd } from '@trellis/testing';\nexport const start = startEtcd;\n";
const ETCD = "import { Etcd3 } from 'etcd3';\nexport const client = Etcd3;\n";
const ETCD_TYPE = "import type { Etcd3 } from 'etcd3';\nexport type Client = Etcd3;\n";

const cases: Case[] = [
  // libs/testing is for tests and tools, never for production code.
  { what: 'app code importing libs/testing', filePath: 'apps/registry/src/fixture.ts', code: TESTING, error: /type:app/ },
  { what: 'a library importing libs/testing', filePath: 'libs/mesh-schema/src/fixture.ts', code: TESTING, error: /type:data-access/ },
  { what: 'the SDK importing libs/testing', filePath: 'libs/sdk-node/src/fixture.ts', code: TESTING, error: /type:sdk/ },
  { what: 'an app test importing libs/testing', filePath: 'apps/registry/test/fixture.test.ts', code: TESTING },
  { what: 'a unit test beside app code importing libs/testing', filePath: 'apps/authz/src/fixture.test.ts', code: TESTING },
  { what: 'a library test importing libs/testing', filePath: 'libs/mesh-schema/test/fixture.test.ts', code: TESTING },
  { what: 'a tool importing libs/testing', filePath: 'tools/bench/src/fixture.ts', code: TESTING },
  // A util library no longer reaches into data access.
  {
    what: 'libs/runtime importing libs/mesh-schema',
    filePath: 'libs/runtime/src/fixture.ts',
    code: "import { KeyLayout } from '@trellis/mesh-schema';\nexport const layout = KeyLayout;\n",
    // mesh-schema uses runtime, so the rule reports the cycle; without one it would name the tags.
    error: /type:util|Circular dependency between "runtime" and "mesh-schema"/,
  },
  // etcd3 only inside libs/mesh-schema (and the harness that starts etcd).
  { what: 'the control plane importing etcd3', filePath: 'apps/control-plane/src/fixture.ts', code: ETCD, error: /"etcd3"/ },
  { what: 'the registry importing an etcd3 type', filePath: 'apps/registry/src/fixture.ts', code: ETCD_TYPE, error: /"etcd3"/ },
  { what: 'authz importing etcd3', filePath: 'apps/authz/src/fixture.ts', code: ETCD, error: /"etcd3"/ },
  { what: 'an app test importing etcd3', filePath: 'apps/control-plane/test/fixture.test.ts', code: ETCD_TYPE, error: /"etcd3"/ },
  { what: 'libs/runtime importing etcd3', filePath: 'libs/runtime/src/fixture.ts', code: ETCD, error: /"etcd3"/ },
  { what: 'the SDK importing etcd3', filePath: 'libs/sdk-node/src/fixture.ts', code: ETCD, error: /"etcd3"/ },
  { what: 'a tool importing etcd3', filePath: 'tools/bench/src/fixture.ts', code: ETCD, error: /"etcd3"/ },
  { what: 'libs/mesh-schema importing etcd3', filePath: 'libs/mesh-schema/src/fixture.ts', code: ETCD },
  { what: 'libs/testing importing etcd3', filePath: 'libs/testing/src/fixture.ts', code: ETCD },
  // Apps never import each other; tools only through the listed entry points.
  {
    what: 'one app importing another',
    filePath: 'apps/authz/src/fixture.ts',
    code: "import { loadControlPlaneConfig } from '../../control-plane/src/config';\nexport const load = loadControlPlaneConfig;\n",
    error: /relative or absolute path/,
  },
  {
    what: 'a tool importing an app module that is not a listed entry point',
    filePath: 'tools/bench/src/fixture.ts',
    code: "import { createApp } from '../../../apps/registry/src/app';\nexport const app = createApp;\n",
    error: /relative or absolute path/,
  },
  {
    what: 'a tool importing a listed app entry point',
    filePath: 'tools/deploy-tests/src/fixture.ts',
    code: "import { loadRegistryConfig } from '../../../apps/registry/src/config';\nexport const load = loadRegistryConfig;\n",
  },
  // A module path computed at run time is invisible to the rules above.
  {
    what: 'require() with a computed path',
    filePath: 'tools/deploy-tests/src/fixture.ts',
    code: "import { join } from 'node:path';\n// eslint-disable-next-line @typescript-eslint/no-require-imports\nexport const config = require(join(__dirname, 'apps/authz/src/config.ts'));\n",
    error: /computed path/,
  },
  // Generated code depends on nothing of ours; Redis stays out of the registry and the control plane.
  {
    what: 'generated types importing a library',
    filePath: 'libs/envoy-types/src/fixture.ts',
    // mesh-contracts depends on no library of ours, even through its tests: with a library that does
    // (runtime's tests use @trellis/testing, which uses the generated types) nx reports the cycle instead.
    code: "import { XDS_TOKEN_AUDIENCE } from '@trellis/mesh-contracts';\nexport const audience = XDS_TOKEN_AUDIENCE;\n",
    error: /type:generated/,
  },
  {
    what: 'the registry importing ioredis',
    filePath: 'apps/registry/src/fixture.ts',
    code: "import { Redis } from 'ioredis';\nexport const r = Redis;\n",
    error: /"ioredis"/,
  },
  {
    what: 'the control plane importing ioredis',
    filePath: 'apps/control-plane/src/fixture.ts',
    code: "import { Redis } from 'ioredis';\nexport const r = Redis;\n",
    error: /"ioredis"/,
  },
];

type Linted = { filePath: string; messages: Array<{ ruleId: string | null; message: string }> };

let results: Map<string, Linted['messages']>;

beforeAll(() => {
  const run = spawnSync(process.execPath, [join(__dirname, 'lint-virtual-files.mjs')], {
    cwd: ROOT,
    input: JSON.stringify(cases.map(({ filePath, code }) => ({ filePath, code }))),
    encoding: 'utf8',
    env: { ...process.env, NX_DAEMON: 'false' },
    maxBuffer: 16 * 1024 * 1024,
  });
  if (run.status !== 0) throw new Error(`lint-virtual-files.mjs failed (${run.status}): ${run.stderr}`);
  const linted = JSON.parse(run.stdout.slice(run.stdout.lastIndexOf(RESULTS_MARKER) + RESULTS_MARKER.length)) as Linted[];
  // Several cases share a path; results come back in order.
  results = new Map(linted.map((r, i) => [`${i}`, r.messages]));
}, 120_000);

describe.each(cases.map((c, i) => [c.what, i, c] as const))('%s', (_what, i, c) => {
  if (c.error) {
    it(`fails lint with an error naming ${c.error}`, () => {
      const messages = results.get(`${i}`)!.map((m) => `${m.ruleId}: ${m.message}`);
      expect(messages.filter((m) => c.error!.test(m))).not.toEqual([]);
    });
  } else {
    it('lints clean', () => {
      expect(results.get(`${i}`)).toEqual([]);
    });
  }
});
