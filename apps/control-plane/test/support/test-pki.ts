// A throwaway CA, a server certificate for 127.0.0.1 and client certificates
// naming services (URI SAN spiffe://trellis.local/svc/<name>, the default trust domain), made with openssl.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPki {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  client(service: string): { cert: Buffer; key: Buffer };
  ca: Buffer;
  remove(): void;
}

export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-pki-'));
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=trellis-test-ca', '-keyout', 'ca.key', '-out', 'ca.crt');
  const issue = (name: string, cn: string, san: string) => {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
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
  };
  issue('server', 'control-plane', 'IP:127.0.0.1,DNS:localhost');
  const issued = new Set<string>();
  return {
    dir,
    caFile: join(dir, 'ca.crt'),
    serverCertFile: join(dir, 'server.crt'),
    serverKeyFile: join(dir, 'server.key'),
    ca: readFileSync(join(dir, 'ca.crt')),
    client(service) {
      const name = `client-${service}`;
      if (!issued.has(service)) {
        issue(name, service, `URI:spiffe://trellis.local/svc/${service}`);
        issued.add(service);
      }
      return { cert: readFileSync(join(dir, `${name}.crt`)), key: readFileSync(join(dir, `${name}.key`)) };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
