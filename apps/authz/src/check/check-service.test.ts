// CheckService decisions with in-memory fakes for the registry view and the key
// store (pure logic; the real etcd/Redis path is covered in test/authz.test.ts).
import { status } from '@grpc/grpc-js';
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
import { decodeCheckAttributes } from './check-attributes';
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
});
