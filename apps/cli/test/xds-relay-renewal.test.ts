// The relay's upstream credential follows the agent's certificate: streams opened
// after a renewal present the new certificate, streams opened before keep going on
// their connection. The upstream here is a stand-in ADS server over real mTLS that
// answers each stream with the serial of the client certificate it saw.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Metadata, Server, ServerCredentials, credentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { DiscoveryRequest } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { generateRootCa, generateWorkloadKey, issueServerCertificate, MeshCa, type RootCa } from '@trellis/pki';
import { createLogger, createMetricsRegistry } from '@trellis/runtime';
import { certificateFilesIn, writeCertificateFiles } from '@trellis/sdk-node';
import { createAgentMetrics } from '../src/agent/metrics';
import { ADS_METHODS, XdsRelay } from '../src/agent/xds-relay';

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };

describe('xDS relay: certificate renewal', () => {
  let root: RootCa;
  let dir: string;
  let upstream: Server;
  let relay: XdsRelay;
  let client: Client;

  const issue = async () => {
    const ca = await MeshCa.load(root, { trustDomain: 'trellis.local', lifetimeSeconds: 3600 });
    const key = await generateWorkloadKey('a');
    const issued = await ca.issue(key.csrPem, 'a');
    await writeCertificateFiles(dir, {
      certificateChainPem: issued.chainPem,
      privateKeyPem: key.keyPem,
      trustBundlePem: ca.trustBundlePem,
    });
    return issued.serialNumber.toUpperCase();
  };

  /** Opens a stream through the relay as service a and resolves with the first answer (the serial upstream saw). */
  const open = () => {
    const stream = client.makeBidiStreamRequest(ADS_METHODS.sotw, raw.serialize, raw.deserialize, new Metadata());
    const first = new Promise<string>((resolve, reject) => {
      stream.once('data', (b: Buffer) => resolve(b.toString()));
      stream.once('error', reject);
    });
    stream.write(Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromPartial({ node: { id: 'a-1', cluster: 'a' } })).finish()));
    return { stream, first };
  };

  beforeAll(async () => {
    root = await generateRootCa({ commonName: 'mesh root' });
    dir = await mkdtemp(join(tmpdir(), 'relay-renewal-'));
    const serving = await issueServerCertificate(root, { commonName: 'cp', dnsNames: ['localhost'] });
    upstream = new Server();
    upstream.register(
      ADS_METHODS.sotw,
      (call: ServerDuplexStream<Buffer, Buffer>) => {
        const serial = call.getAuthContext().sslPeerCertificate?.serialNumber ?? 'none';
        call.on('data', () => call.write(Buffer.from(serial)));
        call.on('end', () => call.end());
      },
      raw.serialize,
      raw.deserialize,
      'bidi',
    );
    const port = await new Promise<number>((resolve, reject) =>
      upstream.bindAsync(
        '127.0.0.1:0',
        ServerCredentials.createSsl(
          Buffer.from(root.certificatePem),
          [{ cert_chain: Buffer.from(serving.certificatePem), private_key: Buffer.from(serving.keyPem) }],
          true,
        ),
        (err, p) => (err ? reject(err) : resolve(p)),
      ),
    );
    const files = certificateFilesIn(dir);
    relay = new XdsRelay({
      service: 'a',
      listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
      upstream: `127.0.0.1:${port}`,
      // The certificate names localhost: an IP as the TLS server name is DEP0123.
      serverName: 'localhost',
      credentials: async () =>
        credentials.createSsl(
          await readFile(files.caCertificateFile),
          await readFile(files.privateKeyFile),
          await readFile(files.certificateFile),
        ),
      logger: createLogger('agent', 'silent'),
      metrics: createAgentMetrics(createMetricsRegistry('agent')),
    });
    await issue();
    await relay.start();
    client = new Client(relay.target, credentials.createInsecure());
  });
  afterAll(async () => {
    client?.close();
    await relay?.stop();
    upstream?.forceShutdown();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('new streams present the renewed certificate; an open stream keeps its connection', async () => {
    const old = open();
    const oldSerial = await old.first;

    const renewed = await issue();
    relay.renewCredentials();
    const fresh = open();
    expect(await fresh.first).toBe(renewed);
    expect(renewed).not.toBe(oldSerial);

    // The stream opened before the renewal still answers, on its old connection and certificate.
    const again = new Promise<string>((resolve) => old.stream.once('data', (b: Buffer) => resolve(b.toString())));
    old.stream.write(Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromPartial({ typeUrl: 'x' })).finish()));
    expect(await again).toBe(oldSerial);
    old.stream.end();
    fresh.stream.end();
  });
});
