// Starts xds-call-loop in a child process with a given node identity and
// watches what its calls observe.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { proxylessBootstrap, type CertificateFiles } from '@trellis/sdk-node';

const ROOT = join(__dirname, '../../../..');
const OUT_DIR = join(ROOT, 'node_modules/.cache/trellis-control-plane-test');
const bundled = new Map<string, Promise<string>>();

/** Bundles a child-process script of this directory once (inside the repo so its packages resolve from node_modules). */
export function bundle(script: 'xds-call-loop' | 'xds-who-server' | 'who-server-process' | 'control-plane-process'): Promise<string> {
  let done = bundled.get(script);
  if (!done) {
    done = (async () => {
      mkdirSync(OUT_DIR, { recursive: true });
      const outfile = join(OUT_DIR, `${script}.js`);
      await build({
        entryPoints: [join(__dirname, `${script}.ts`)],
        bundle: true,
        platform: 'node',
        format: 'cjs',
        target: 'node20',
        // npm packages stay external; the workspace libs are bundled (resolved like tsconfig.base.json).
        packages: 'external',
        tsconfig: join(ROOT, 'tsconfig.base.json'),
        outfile,
        logLevel: 'error',
      });
      return outfile;
    })();
    bundled.set(script, done);
  }
  return done;
}

export interface CallResult {
  /** When the call ended. */
  t: number;
  /** When the call began. */
  start: number;
  ok: boolean;
  instance?: string;
  /** The caller the server verified from this client's certificate (xds-who-server). */
  caller?: string;
  code?: number;
  details?: string;
  /** A failed call whose response had begun: the instance that began it (a plain Who server's header). */
  responseStartedBy?: string;
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
    /** Each call's deadline (default 10 s). */
    deadlineMs?: number;
    zone?: string;
    /** Workload certificate files: the client then speaks mTLS to callees in permissive or strict mode. */
    certificates?: CertificateFiles;
  }): Promise<XdsClientProcess> {
    const script = await bundle('xds-call-loop');
    const bootstrap = proxylessBootstrap({
      xdsServer: opts.xdsAddress,
      service: opts.service,
      nodeId: opts.nodeId,
      locality: { region: 'local', zone: opts.zone ?? 'z1' },
      certificates: opts.certificates,
      refreshIntervalSeconds: 1,
    });
    const child = spawn(process.execPath, [script, opts.target, String(opts.intervalMs ?? 25), String(opts.deadlineMs ?? 10_000)], {
      cwd: ROOT,
      env: {
        ...process.env,
        GRPC_XDS_BOOTSTRAP_CONFIG: JSON.stringify(bootstrap),
        GRPC_XDS_EXPERIMENTAL_RBAC: 'true',
        ...(opts.certificates ? { TRELLIS_TEST_MTLS: 'true' } : {}),
      },
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
