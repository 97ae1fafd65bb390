// ServingTls in isolation: what a refresh applies, what it refuses (keeping the last good
// material), and what its listeners and grpc-js credentials see. The control plane's and
// authz's tests rotate real ports with it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestPki, type TestPki } from '@trellis/testing';
import type { Logger } from '../logger';
import { caUpdateOf, ServingTls, tlsFilesSource, type TlsMaterial, type TlsMaterialSource, type TlsRefreshResult } from './serving-tls';

let first: TestPki;
let second: TestPki;
beforeAll(() => {
  first = createTestPki();
  second = createTestPki();
});
afterAll(() => {
  first?.remove();
  second?.remove();
});

const materialOf = (pki: TestPki, clientCa = true): TlsMaterial => ({
  certificateChainPem: pki.server.cert.toString(),
  privateKeyPem: pki.server.key.toString(),
  ...(clientCa ? { clientCaPem: pki.ca.toString() } : {}),
});

/** A source that serves whatever the test last put in it, counting reads. */
function settableSource(initial: TlsMaterial) {
  let next = initial;
  let failure: Error | undefined;
  const source = {
    reads: 0,
    describe: 'a test source',
    set(material: TlsMaterial) {
      next = material;
      failure = undefined;
    },
    fail(error: Error) {
      failure = error;
    },
    async next(current: TlsMaterial | undefined) {
      source.reads++;
      if (failure) throw failure;
      return current && current.certificateChainPem === next.certificateChainPem && current.privateKeyPem === next.privateKeyPem
        ? current
        : next;
    },
  } satisfies TlsMaterialSource & Record<string, unknown>;
  return source;
}

function quietLogger() {
  return { info: jest.fn(), error: jest.fn() } as unknown as Logger & { error: jest.Mock };
}

async function startWith(source: TlsMaterialSource) {
  const results: TlsRefreshResult[] = [];
  const logger = quietLogger();
  const tls = await ServingTls.start(source, { name: 'test', logger, onRefresh: (r) => results.push(r) });
  const identities: string[] = [];
  const changes: TlsMaterial[] = [];
  tls.addIdentityCertificateListener((update) => identities.push(update!.certificate.toString()));
  tls.onChange((m) => changes.push(m));
  await new Promise((resolve) => process.nextTick(resolve)); // a provider's first update is asynchronous
  return { tls, results, logger, identities, changes };
}

describe('ServingTls', () => {
  it('refuses to start with a key that is not the certificate’s', async () => {
    const source = settableSource({ ...materialOf(first), privateKeyPem: second.server.key.toString() });
    await expect(ServingTls.start(source, { name: 'test', logger: quietLogger() })).rejects.toThrow(/key does not belong/);
  });

  it('applies new material to every listener, and counts a read of the same as unchanged', async () => {
    const source = settableSource(materialOf(first));
    const { tls, results, identities, changes } = await startWith(source);
    expect(identities).toEqual([first.server.cert.toString()]);

    expect(await tls.refresh()).toBe('unchanged');
    source.set(materialOf(second));
    expect(await tls.refresh()).toBe('changed');
    expect(tls.material.certificateChainPem).toBe(second.server.cert.toString());
    expect(identities).toEqual([first.server.cert.toString(), second.server.cert.toString()]);
    expect(changes.map((m) => m.clientCaPem)).toEqual([second.ca.toString()]);
    expect(results).toEqual(['unchanged', 'changed']);
  });

  it.each([
    [
      'a key that is not the certificate’s',
      () => ({ ...materialOf(second), privateKeyPem: first.server.key.toString() }),
      /key does not belong/,
    ],
    ['a certificate that is not PEM', () => ({ ...materialOf(second), certificateChainPem: 'garbage' }), /PEM routines/],
    ['client roots without a certificate', () => ({ ...materialOf(second), clientCaPem: 'garbage' }), /client roots hold no PEM/],
  ])('keeps the last good material when the new one has %s', async (_, broken, reason) => {
    const source = settableSource(materialOf(first));
    const { tls, results, logger, identities, changes } = await startWith(source);
    source.set(broken());
    expect(await tls.refresh()).toBe('error');
    expect(tls.material).toEqual(materialOf(first));
    expect(identities).toHaveLength(1);
    expect(changes).toHaveLength(0);
    expect(results).toEqual(['error']);
    expect(logger.error).toHaveBeenCalledWith(
      expect.objectContaining({ err: expect.objectContaining({ message: expect.stringMatching(reason) }) }),
      expect.any(String),
    );
  });

  it('keeps the last good material when the source cannot be read', async () => {
    const source = settableSource(materialOf(first));
    const { tls, results } = await startWith(source);
    source.fail(new Error('ENOENT: tls.key'));
    expect(await tls.refresh()).toBe('error');
    expect(tls.material).toEqual(materialOf(first));
    expect(results).toEqual(['error']);
  });

  it('shares one read between concurrent refreshes (a SIGHUP during a poll)', async () => {
    const source = settableSource(materialOf(first));
    const { tls } = await startWith(source);
    const before = source.reads;
    source.set(materialOf(second));
    expect(await Promise.all([tls.refresh(), tls.refresh()])).toEqual(['changed', 'changed']);
    expect(source.reads).toBe(before + 1);
  });

  describe('from files', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'serving-tls-'));
      writeFileSync(join(dir, 'tls.crt'), first.server.cert);
      writeFileSync(join(dir, 'tls.key'), first.server.key);
      writeFileSync(join(dir, 'ca.crt'), first.ca);
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('reads the client CA when one is named, and asks for client certificates only then', async () => {
      const files = { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') };
      const withCa = await ServingTls.start(tlsFilesSource({ ...files, clientCa: join(dir, 'ca.crt') }), {
        name: 'test',
        logger: quietLogger(),
      });
      expect(withCa.material).toEqual(materialOf(first));
      expect(withCa.serverCredentials(true)._getConstructorOptions()).toMatchObject({ requestCert: true, rejectUnauthorized: true });

      const withoutCa = await ServingTls.start(tlsFilesSource(files), { name: 'test', logger: quietLogger() });
      expect(withoutCa.material).toEqual(materialOf(first, false));
      expect(caUpdateOf(withoutCa.material)).toBeNull();
      expect(withoutCa.serverCredentials(false)._getConstructorOptions()).toMatchObject({ requestCert: false });
    });

    it('follows the files: a rewritten pair is changed, a deleted key an error that keeps the pair', async () => {
      const tls = await ServingTls.start(tlsFilesSource({ certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') }), {
        name: 'test',
        logger: quietLogger(),
      });
      expect(await tls.refresh()).toBe('unchanged');
      writeFileSync(join(dir, 'tls.crt'), second.server.cert);
      writeFileSync(join(dir, 'tls.key'), second.server.key);
      expect(await tls.refresh()).toBe('changed');
      rmSync(join(dir, 'tls.key'));
      expect(await tls.refresh()).toBe('error');
      expect(tls.material).toEqual(materialOf(second, false));
    });
  });
});
