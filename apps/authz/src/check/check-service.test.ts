// CheckService decisions with in-memory fakes for the registry view and the key
// store (pure logic; the real etcd/Redis path is covered in test/authz.test.ts).
import { Writable } from 'node:stream';
import { Metadata, status } from '@grpc/grpc-js';
import { CheckRequest, CheckResponse } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import type { ServiceRecord, ServiceSpecInput } from '@trellis/mesh-schema';
import type { PeerIdentity } from '@trellis/pki';
import { ServiceSpec } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { Registry } from 'prom-client';
import { checkRequest, outbound } from '../../test/support/harness';
import { MemoryKeyStore } from '../../test/support/memory-key-store';
import { CloudflareAccessVerifier } from '../edge/cloudflare-access';
import { KeyRing } from '../keys/key-ring';
import { generateSigningKey } from '../keys/signing-key';
import { AuthzMetrics } from '../metrics';
import { MeshTokenIssuer } from '../tokens/token-issuer';
import { MeshTokenVerifier } from '../tokens/token-verifier';
import { decodeCheckAttributes, type CheckAttributes } from './check-attributes';
import { CheckService } from './check-service';
import { MeshPolicy, type MeshView } from './mesh-policy';

const record = (spec: ServiceSpecInput): { value: ServiceRecord } => {
  const at = new Date(0).toISOString();
  return { value: { spec: ServiceSpec.parse(spec), generation: 1, created: { actor: 't', at }, updated: { actor: 't', at } } };
};

describe('CheckService', () => {
  const logger = createLogger('authz', 'silent');
  let metrics: AuthzMetrics;
  let view: { ready: boolean; state: MeshView['state'] };
  let keyRing: KeyRing;
  let service: CheckService;

  const wire = (request: Parameters<typeof checkRequest>[0]) => CheckRequest.encode(checkRequest(request)).finish();
  // The peer a sidecar's client certificate proves: the source's for outbound, the destination's otherwise.
  const ownPeer = (request: Parameters<typeof checkRequest>[0]): PeerIdentity => {
    const context = request.context ?? {};
    const service = context['trellis.direction'] === 'outbound' ? context['trellis.source'] : context['trellis.destination'];
    return { kind: 'service', service: service ?? 'a' };
  };
  const run = async (request: Parameters<typeof checkRequest>[0], peer: PeerIdentity | 'no certificate' = ownPeer(request)) =>
    CheckResponse.decode(await service.check(decodeCheckAttributes(wire(request)), peer === 'no certificate' ? undefined : peer));

  beforeEach(async () => {
    metrics = new AuthzMetrics(new Registry());
    const base = { team: 't', protocol: 'http' as const, port: 80 };
    view = {
      ready: true,
      state: {
        services: new Map([
          ['a', record({ ...base, name: 'a', dependencies: [{ service: 'b' }] })],
          ['b', record({ ...base, name: 'b' })],
        ]),
        authzKeys: new Map(),
      },
    };
    keyRing = new KeyRing(new MemoryKeyStore(), { publishLeadSeconds: 60, tokenTtlSeconds: 900, clockSkewSeconds: 30 }, logger, metrics);
    await keyRing.setLocalKeys([await generateSigningKey()]);
    const tokens = new MeshTokenIssuer(keyRing, undefined, () => 'trellis', { ttlSeconds: 900, cacheTtlSeconds: 870 }, metrics, logger);
    const access = new CloudflareAccessVerifier({ certsUrlTemplate: 'http://127.0.0.1:9/{teamDomain}', clockSkewSeconds: 30 }, metrics);
    const verifier = new MeshTokenVerifier(keyRing, { issuer: () => 'trellis', clockSkewSeconds: 30, maxLifetimeSeconds: 900 });
    service = new CheckService(new MeshPolicy(view), tokens, verifier, access, metrics, logger);
  });

  it('takes the source from the client certificate: another trellis.source is denied and counted', async () => {
    const impostor = await run(outbound('a', 'b'), { kind: 'service', service: 'b' });
    expect(impostor.status?.code).toBe(status.PERMISSION_DENIED);
    expect(impostor.status?.message).toMatch(/^source-mismatch/);
    const counted = await metrics.callerIdentityDenials.get();
    expect(counted.values).toEqual([expect.objectContaining({ labels: { direction: 'outbound', reason: 'source-mismatch' }, value: 1 })]);
    // No certificate at all: refused before anything else is looked at.
    expect((await run(outbound('a', 'b'), 'no certificate')).status?.message).toMatch(/^peer-unauthenticated/);
    // The certificate's service is the source even when the route leaves it out.
    const unnamed = await run(
      { context: { 'trellis.destination': 'b', 'trellis.direction': 'outbound' } },
      { kind: 'service', service: 'a' },
    );
    expect(unnamed.status?.code).toBe(status.OK);
  });

  it('fails closed before the first registry snapshot', async () => {
    view.ready = false;
    const response = await run(outbound('a', 'b'));
    expect(response.status?.code).toBe(status.UNAVAILABLE);
    expect(response.httpResponse?.$case === 'deniedResponse' && response.httpResponse.value.status?.code).toBe(503);
  });

  it('answers a cache hit synchronously with the same encoded bytes', async () => {
    const attributes = decodeCheckAttributes(wire(outbound('a', 'b')));
    const peer: PeerIdentity = { kind: 'service', service: 'a' };
    const first = await service.check(attributes, peer);
    const second = service.check(attributes, peer);
    expect(Buffer.isBuffer(second)).toBe(true);
    expect(second).toBe(first);
    expect(CheckResponse.decode(first).status?.code).toBe(status.OK);
  });

  it('denies with a reason for a malformed request, a missing direction and bad service names', async () => {
    const malformed = CheckResponse.decode(await service.check(decodeCheckAttributes(Buffer.from([0x0a, 0x05, 0x01])), undefined));
    expect(malformed.status?.message).toMatch(/^malformed-request/);
    expect((await run({ context: { 'trellis.source': 'a', 'trellis.destination': 'b' } })).status?.message).toMatch(/^missing-context/);
    expect((await run(outbound('A_B', 'b'))).status?.message).toMatch(/^missing-context/);
  });

  it('denies with 503 when no key may sign yet, never with a failed RPC', async () => {
    await keyRing.setLocalKeys([]);
    const response = await run(outbound('a', 'b'));
    expect(response.status).toMatchObject({ code: status.UNAVAILABLE, message: expect.stringMatching(/^no-signing-key/) });
  });

  describe('request ids in the log', () => {
    const lines: Array<Record<string, unknown>> = [];
    const loggingService = (level: string) => {
      lines.length = 0;
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
          done();
        },
      });
      const internals = service as unknown as { tokens: MeshTokenIssuer; verifier: MeshTokenVerifier; access: CloudflareAccessVerifier };
      return new CheckService(
        new MeshPolicy(view),
        internals.tokens,
        internals.verifier,
        internals.access,
        metrics,
        createLogger('authz', level, sink),
      );
    };
    /** Attributes that count how often the HTTP attributes (where the request id lives) are decoded. */
    const counted = (request: Parameters<typeof checkRequest>[0]) => {
      const attributes = decodeCheckAttributes(wire(request));
      const reads = { http: 0 };
      const http = attributes.http.bind(attributes);
      const wrapped: CheckAttributes = { ...attributes, http: () => (reads.http++, http()) };
      return { attributes: wrapped, reads };
    };
    const flush = () => new Promise((resolve) => setImmediate(resolve));
    const peerA: PeerIdentity = { kind: 'service', service: 'a' };

    it("logs a denial with the request's x-request-id", async () => {
      const checks = loggingService('info');
      await checks.check(decodeCheckAttributes(wire({ ...outbound('b', 'a'), headers: { 'x-request-id': 'req-denied-1' } })), {
        kind: 'service',
        service: 'b',
      });
      await flush();
      expect(lines).toEqual([expect.objectContaining({ msg: 'request denied', reason: 'undeclared', requestId: 'req-denied-1' })]);
    });

    it("logs a denial with the Check call's gRPC metadata id when the request carries none", async () => {
      const checks = loggingService('info');
      const metadata = new Metadata();
      metadata.set('traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
      await checks.check(decodeCheckAttributes(wire(outbound('b', 'a'))), { kind: 'service', service: 'b' }, metadata);
      await flush();
      expect(lines).toEqual([expect.objectContaining({ reason: 'undeclared', requestId: '4bf92f3577b34da6a3ce929d0e0e4736' })]);
    });

    it('at info level, an allowed Check logs nothing and never reads the HTTP attributes for an id', async () => {
      const checks = loggingService('info');
      const { attributes, reads } = counted({ ...outbound('a', 'b'), headers: { 'x-request-id': 'req-ok-1' } });
      expect(CheckResponse.decode(await checks.check(attributes, peerA)).status?.code).toBe(status.OK);
      const hit = checks.check(attributes, peerA);
      expect(Buffer.isBuffer(hit)).toBe(true);
      await flush();
      expect(reads.http).toBe(0);
      expect(lines.filter((l) => l['msg'] === 'request allowed')).toEqual([]);
    });

    it('at debug level, an allowed Check is logged with its request id', async () => {
      const checks = loggingService('debug');
      const { attributes } = counted({ ...outbound('a', 'b'), headers: { 'x-request-id': 'req-ok-2' } });
      await checks.check(attributes, peerA);
      await flush();
      expect(lines.filter((l) => l['msg'] === 'request allowed')).toEqual([
        expect.objectContaining({ requestId: 'req-ok-2', direction: 'outbound', source: 'a', destination: 'b', peer: 'a' }),
      ]);
    });

    it('logs an unexpected failure with the request id, and still denies', async () => {
      const checks = loggingService('info');
      (checks as unknown as { policy: { allowsCall(): never } }).policy.allowsCall = () => {
        throw new Error('boom');
      };
      const response = CheckResponse.decode(
        await checks.check(decodeCheckAttributes(wire({ ...outbound('a', 'b'), headers: { 'x-request-id': 'req-err-1' } })), peerA),
      );
      expect(response.status?.code).toBe(status.UNAVAILABLE);
      await flush();
      expect(lines).toEqual(
        expect.arrayContaining([expect.objectContaining({ level: 50, msg: 'check failed unexpectedly; denying', requestId: 'req-err-1' })]),
      );
    });
  });
});
