import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary, requireBinary } from './binaries';
import { freePort } from './ports';

describe('findBinary', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trellis-bin-'));
    await writeFile(join(dir, 'fake-etcd'), '#!/bin/sh\n');
    await chmod(join(dir, 'fake-etcd'), 0o755);
    await writeFile(join(dir, 'not-executable'), '');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('finds an executable on PATH', () => {
    expect(findBinary('fake-etcd', dir)).toBe(join(dir, 'fake-etcd'));
  });

  it('ignores files that are not executable', () => {
    expect(findBinary('not-executable', dir)).toBeUndefined();
  });

  it('fails with the install command when a binary is missing', () => {
    expect(() => requireBinary('trellis-no-such-binary')).toThrow(/sudo apt-get install etcd-server redis-server/);
  });
});

describe('freePort', () => {
  it('returns distinct usable loopback ports', async () => {
    const ports = await Promise.all([freePort(), freePort(), freePort()]);
    for (const p of ports) expect(p).toBeGreaterThan(0);
    expect(new Set(ports).size).toBe(3);
  });

  it('never hands out a port twice, though the OS may give a released one to the next bind', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 300; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(300);
  });

  it('hands out no port an outgoing connection could take as its source port meanwhile (Linux: below ip_local_port_range)', async () => {
    let rangeStart: number;
    try {
      rangeStart = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    } catch {
      return; // not Linux: the OS's pick is all there is
    }
    for (let i = 0; i < 50; i++) {
      const port = await freePort();
      expect(port).toBeGreaterThanOrEqual(10_000);
      expect(port).toBeLessThan(rangeStart);
    }
  });
});
