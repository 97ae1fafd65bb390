// The control-plane harness stops the etcd it started when the control plane fails to start: left
// running, that etcd (a child of the jest worker) kept jest from exiting after the failure.
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { eventually, startControlPlaneHarness } from './support/control-plane-harness';

/** Process ids of this process's children named etcd (Linux /proc). */
function etcdChildren(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone since the listing
    }
    const commEnd = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, commEnd);
    const ppid = Number(stat.slice(commEnd + 2).split(' ')[1]);
    if (comm === 'etcd' && ppid === process.pid) pids.push(Number(entry));
  }
  return pids;
}

const ownsItsEtcd = process.platform === 'linux' && !process.env['TRELLIS_TEST_ETCD_ENDPOINTS'];

(ownsItsEtcd ? it : it.skip)(
  'stops the etcd it started when the control plane cannot bind its xDS port',
  async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    const before = new Set(etcdChildren());
    let started: number[] = [];
    const watching = setInterval(() => {
      const now = etcdChildren().filter((pid) => !before.has(pid));
      if (now.length > 0) started = now;
    }, 20);
    try {
      await expect(startControlPlaneHarness({ TRELLIS_HOST: '127.0.0.1', TRELLIS_XDS_PORT: port })).rejects.toThrow();
    } finally {
      clearInterval(watching);
      taken.close();
    }
    // The harness did start an etcd of its own (seen while it ran), and none of its own is left.
    expect(started.length).toBeGreaterThan(0);
    await eventually('the harness etcd stopped', () => etcdChildren().every((pid) => before.has(pid)) || undefined);
  },
  120_000,
);
