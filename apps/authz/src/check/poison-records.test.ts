// Property: every mesh the registry could have written (records drawn by
// fast-check and kept only when the zod schemas accept them) leaves authz's
// policy, edge and key-set code answering: nothing throws, every answer is a
// decision. The control plane's side: apps/control-plane/src/envoy/poison-records.test.ts.
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { meshArbitrary, propertyRuns, type GeneratedMesh } from '@trellis/mesh-schema/testing';
import { createLogger } from '@trellis/runtime';
import { CloudflareAccessVerifier } from '../edge/cloudflare-access';
import { KeyRing } from '../keys/key-ring';
import { AuthzMetrics } from '../metrics';
import { MeshTokenVerifier } from '../tokens/token-verifier';
import { MeshPolicy, type MeshView } from './mesh-policy';

const PRODUCTION_CERTS_URL = 'https://{teamDomain}/cdn-cgi/access/certs';
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
/** A token naming `kid`, signed by nobody: verification must look the key up and then refuse it. */
const tokenFor = (kid: string, alg: string) =>
  `${b64({ alg, kid, typ: 'JWT' })}.${b64({ sub: 'a', aud: 'b', iss: 'trellis' })}.${b64('sig')}`;

function viewOf(mesh: GeneratedMesh): MeshView {
  return {
    ready: true,
    state: {
      services: new Map(mesh.services.map((s) => [s.spec.name, { value: s }])),
      meshSettings: mesh.meshSettings,
      authzKeys: new Map(mesh.authzKeys.map((k) => [k.kid, k])),
    },
  };
}

describe('records the registry accepts never break authz', () => {
  const logger = createLogger('authz', 'silent');

  it('answers every call, ingress and edge question, and verifies against every published key set', async () => {
    await fc.assert(
      fc.asyncProperty(meshArbitrary, async (mesh) => {
        const metrics = new AuthzMetrics(new Registry());
        const policy = new MeshPolicy(viewOf(mesh));
        const names = [...mesh.services.map((s) => s.spec.name), 'ghost'];
        for (const source of names)
          for (const destination of names) expect(typeof policy.allowsCall(source, destination).allowed).toBe('boolean');

        const access = new CloudflareAccessVerifier({ certsUrlTemplate: PRODUCTION_CERTS_URL, clockSkewSeconds: 30 }, metrics, logger);
        for (const service of mesh.services) {
          const ingress = service.spec.ingress;
          if (!ingress) continue;
          expect(policy.ingressOf(service.spec.name)?.service).toBe(service.spec.name);
          const app = ingress.cloudflareAccess;
          if (!app) continue;
          // The URL authz fetches the team's keys from: what new URL threw on for "m.3".
          expect(new URL(PRODUCTION_CERTS_URL.replace('{teamDomain}', app.teamDomain)).hostname).toBe(app.teamDomain);
          // A malformed token is refused before any fetch; the team's key set is built on the way.
          await expect(access.verify('not.a.jwt', app)).resolves.toMatchObject({ valid: false, reason: 'malformed' });
        }
        expect(policy.accessTeamDomains()).toEqual([...new Set(policy.accessTeamDomains())].sort());

        const store = {
          listAuthzKeys: async () => mesh.authzKeys,
          putAuthzKey: async () => undefined,
          deleteAuthzKey: async () => undefined,
        };
        const ring = new KeyRing(store, { publishLeadSeconds: 300, tokenTtlSeconds: 900, clockSkewSeconds: 30 }, logger, metrics);
        await ring.reconcile();
        // Keys whose JWK is no key are left out of the JWKS (sdk-node imports every key it lists).
        const served = ring.jwks().keys.map((k) => k.kid);
        for (const key of mesh.authzKeys) if (!key.jwk.x && !key.jwk.n) expect(served).not.toContain(key.kid);
        const verifier = new MeshTokenVerifier(ring, { issuer: () => 'trellis', clockSkewSeconds: 30, maxLifetimeSeconds: 900 });
        for (const key of mesh.authzKeys) {
          await expect(verifier.verify(tokenFor(key.kid, key.jwk.alg), 'b')).resolves.toMatchObject({ valid: false });
        }
      }),
      { numRuns: propertyRuns(100) },
    );
  });
});
