// A throwaway PKI for the TLS tests, made with openssl: a CA, a server certificate for 127.0.0.1 and
// localhost, and client certificates naming services (URI SAN spiffe://trellis.local/svc/<name>, the
// default trust domain). openssl rather than libs/pki: the harness may not depend on a library that
// depends on libs/runtime, whose own TLS tests use this.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireBinary } from './binaries';

/** A certificate and its key, as files (for a process's configuration) and as bytes (for an in-process server or client). */
export interface TestKeyPair {
  cert: Buffer;
  key: Buffer;
  certFile: string;
  keyFile: string;
}

export interface TestPki {
  /** The folder holding every file; `remove()` deletes it. */
  dir: string;
  ca: Buffer;
  caFile: string;
  /** CN `server`, SAN IP:127.0.0.1 and DNS:localhost. */
  server: TestKeyPair;
  /** A client certificate for `service` (CN = the service, URI SAN its SPIFFE ID), issued on first use. */
  client(service: string): TestKeyPair;
  remove(): void;
}

/** Each key is EC P-256: openssl makes one in milliseconds, where RSA 2048 takes a loaded machine seconds. */
const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export function createTestPki(): TestPki {
  const openssl = requireBinary('openssl');
  const dir = mkdtempSync(join(tmpdir(), 'trellis-test-pki-'));
  const ssl = (...args: string[]) => execFileSync(openssl, args, { cwd: dir, stdio: 'pipe' });
  const file = (name: string) => join(dir, name);
  const pair = (name: string): TestKeyPair => ({
    cert: readFileSync(file(`${name}.crt`)),
    key: readFileSync(file(`${name}.key`)),
    certFile: file(`${name}.crt`),
    keyFile: file(`${name}.key`),
  });
  const issue = (name: string, cn: string, san: string): TestKeyPair => {
    writeFileSync(file(`${name}.ext`), `subjectAltName=${san}\n`);
    ssl('req', ...NEW_KEY, '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.crt`,
    );
    return pair(name);
  };

  try {
    ssl('req', '-x509', ...NEW_KEY, '-days', '1', '-subj', '/CN=trellis-test-ca', '-keyout', 'ca.key', '-out', 'ca.crt');
    const server = issue('server', 'server', 'IP:127.0.0.1,DNS:localhost');
    const clients = new Map<string, TestKeyPair>();
    return {
      dir,
      ca: readFileSync(file('ca.crt')),
      caFile: file('ca.crt'),
      server,
      client(service) {
        if (!/^[a-z0-9][a-z0-9-]*$/.test(service)) throw new Error(`createTestPki: "${service}" is not a service name`);
        let issued = clients.get(service);
        if (!issued) {
          issued = issue(`client-${service}`, service, `URI:spiffe://trellis.local/svc/${service}`);
          clients.set(service, issued);
        }
        return issued;
      },
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
