// The SDS files `trellis bootstrap --certificate-dir` and `trellis agent` write beside
// the workload certificate: what Envoy's TLS contexts name, surviving the agent's renewals.
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SDS_TRUST_BUNDLE, SDS_WORKLOAD_CERTIFICATE, sidecarSdsFileName, sidecarSdsFiles } from '@trellis/mesh-schema';
import { writeCertificateFiles } from '@trellis/sdk-node';
import { writeSidecarSdsFiles } from './envoy-bootstrap';

const material = (n: number) => ({ certificateChainPem: `cert ${n}\n`, privateKeyPem: `key ${n}\n`, trustBundlePem: `roots ${n}\n` });

describe('writeSidecarSdsFiles', () => {
  let dir: string;
  beforeEach(async () => {
    dir = join(await mkdtemp(join(tmpdir(), 'trellis-sds-')), 'workload');
  });
  afterEach(async () => {
    await rm(join(dir, '..'), { recursive: true, force: true });
  });

  it('writes one SDS file per secret, readable by Envoy, with the contents the control plane expects', async () => {
    const written = await writeSidecarSdsFiles(dir);
    expect(written).toEqual([join(dir, sidecarSdsFileName(SDS_WORKLOAD_CERTIFICATE)), join(dir, sidecarSdsFileName(SDS_TRUST_BUNDLE))]);
    for (const [i, file] of sidecarSdsFiles().entries()) {
      expect(await readFile(written[i]!, 'utf8')).toBe(file.text);
      expect((await stat(written[i]!)).mode & 0o777).toBe(0o644);
    }
    // Nothing left over from the atomic writes.
    expect((await readdir(dir)).sort()).toEqual(written.map((p) => p.slice(dir.length + 1)).sort());
  });

  it("survives the agent's certificate renewals, which swap ..data and prune old versions", async () => {
    await writeCertificateFiles(dir, material(1));
    await writeSidecarSdsFiles(dir);
    await writeCertificateFiles(dir, material(2));
    await writeCertificateFiles(dir, material(3));
    const entries = await readdir(dir);
    expect(entries).toEqual(expect.arrayContaining([sidecarSdsFileName(SDS_WORKLOAD_CERTIFICATE), sidecarSdsFileName(SDS_TRUST_BUNDLE)]));
    expect(await readFile(join(dir, 'cert.pem'), 'utf8')).toBe('cert 3\n');
    // Rewriting unchanged files is a no-op: no move event, no reload in Envoy.
    const before = (await stat(join(dir, sidecarSdsFileName(SDS_TRUST_BUNDLE)))).ino;
    await writeSidecarSdsFiles(dir);
    expect((await stat(join(dir, sidecarSdsFileName(SDS_TRUST_BUNDLE)))).ino).toBe(before);
  });
});
