// Starts xds-call-loop in a child process with a given node identity and
// watches what its calls observe.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

const ROOT = join(__dirname, '../../../..');
const OUT_DIR = join(ROOT, 'node_modules/.cache/trellis-control-plane-test');
let bundled: Promise<string> | undefined;

/** Bundles the loop script once (inside the repo so its packages resolve from node_modules). */
function bundle(): Promise<string> {
  return (bundled ??= (async () => {
    mkdirSync(OUT_DIR, { recursive: true });
    const outfile = join(OUT_DIR, 'xds-call-loop.js');
    await build({
      entryPoints: [join(__dirname, 'xds-call-loop.ts')],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      packages: 'external',
      outfile,
      logLevel: 'error',
    });
    return outfile;
  })());
}

export interface CallResult {
  t: number;
  ok: boolean;
  instance?: string;
  code?: number;
  details?: string;
}

export class XdsClientProcess {
  readonly results: CallResult[] = [];
  private stderr = '';

  private constructor(private readonly child: ChildProcess) {
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) if (line.trim()) this.results.push(JSON.parse(line) as CallResult);
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
  }

  static async start(opts: {
    xdsAddress: string;
    service: string;
    nodeId: string;
    target: string;
    intervalMs?: number;
    zone?: string;
  }): Promise<XdsClientProcess> {
    const script = await bundle();
    const bootstrap = {
      xds_servers: [{ server_uri: opts.xdsAddress, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: opts.nodeId, cluster: opts.service, locality: { region: 'local', zone: opts.zone ?? 'z1' } },
    };
    const child = spawn(process.execPath, [script, opts.target, String(opts.intervalMs ?? 25)], {
      cwd: ROOT,
      env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: JSON.stringify(bootstrap), GRPC_XDS_EXPERIMENTAL_RBAC: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new XdsClientProcess(child);
  }

  /**
   * Waits until the results after `since` satisfy `condition` and returns the
   * time of the call that first satisfied it.
   */
  async waitFor(
    what: string,
    since: number,
    condition: (after: CallResult[]) => CallResult | undefined,
    timeoutMs = 60_000,
  ): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = condition(this.results.filter((r) => r.t >= since));
      if (hit) return hit.t;
      if (Date.now() > deadline) {
        const recent = this.results.slice(-5);
        throw new Error(`timed out waiting for ${what}; last calls: ${JSON.stringify(recent)}; stderr: ${this.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null) return resolve();
      this.child.once('exit', () => resolve());
      this.child.kill('SIGTERM');
    });
  }
}

/** The first call from which on `n` consecutive calls all satisfy `ok`. */
export function streakOf(n: number, ok: (r: CallResult) => boolean): (results: CallResult[]) => CallResult | undefined {
  return (results) => {
    let run = 0;
    for (let i = 0; i < results.length; i++) {
      run = ok(results[i]!) ? run + 1 : 0;
      if (run === n) return results[i - n + 1];
    }
    return undefined;
  };
}
