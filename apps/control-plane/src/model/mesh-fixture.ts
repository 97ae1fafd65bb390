// A fluent builder of registry state for tests (cf. contour's fixture.NewService).
// Records go through the real zod schemas, so defaults match what etcd holds.
import { generateKeyPairSync } from 'node:crypto';
import {
  AuthzPublicKey,
  InstanceRecord,
  ServiceRecord,
  type InstanceRecordInput,
  type MeshSettings,
  type ServiceSpecInput,
} from '@trellis/mesh-schema';
import { buildMeshModel, type MeshStateView } from './build-mesh-model';
import { DEFAULT_TRANSLATOR_SETTINGS, type MeshModel, type TranslatorSettings } from './mesh-model';

const AT = '2026-01-01T00:00:00.000Z';

let rsaModulus: string | undefined;

/** The modulus of a real RSA public key, made once per test process. */
function testRsaModulus(): string {
  rsaModulus ??= generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' }).n!;
  return rsaModulus;
}

export class MeshFixture {
  private revision = 1;
  readonly services = new Map<string, { value: ServiceRecord; modRevision: string }>();
  readonly instances = new Map<string, Map<string, InstanceRecord>>();
  readonly authzKeys = new Map<string, AuthzPublicKey>();
  meshSettings: MeshSettings | undefined = { tokenIssuer: 'trellis', clockSkewSeconds: 30 };

  /** `record` sets stored bookkeeping such as `generation` and `dependencySince`. */
  service(
    name: string,
    spec: Partial<ServiceSpecInput> = {},
    record: Partial<Pick<ServiceRecord, 'generation' | 'dependencySince'>> = {},
  ): this {
    const value = ServiceRecord.parse({
      spec: { name, team: 'team-a', protocol: 'grpc', port: 8080, ...spec },
      generation: 1,
      created: { actor: 'test', at: AT },
      updated: { actor: 'test', at: AT },
      ...record,
    });
    this.services.set(name, { value, modRevision: String(++this.revision) });
    return this;
  }

  withoutService(name: string): this {
    this.services.delete(name);
    this.revision++;
    return this;
  }

  instance(service: string, id: string, address: string, port = 8080, extra: Partial<InstanceRecordInput> = {}): this {
    const record = InstanceRecord.parse({ service, id, address, port, platform: 'vm', registeredAt: AT, ...extra });
    let byId = this.instances.get(service);
    if (!byId) this.instances.set(service, (byId = new Map()));
    byId.set(id, record);
    this.revision++;
    return this;
  }

  withoutInstance(service: string, id: string): this {
    this.instances.get(service)?.delete(id);
    this.revision++;
    return this;
  }

  key(kid: string): this {
    this.authzKeys.set(
      kid,
      AuthzPublicKey.parse({
        kid,
        jwk: { kty: 'RSA', kid, alg: 'RS256', n: testRsaModulus(), e: 'AQAB' },
        publishedAt: AT,
        activeFrom: AT,
      }),
    );
    this.revision++;
    return this;
  }

  /** A copy of the current state: later builder calls do not change it. */
  state(): MeshStateView {
    return {
      revision: String(this.revision),
      services: new Map(this.services),
      instances: new Map([...this.instances].map(([service, byId]) => [service, new Map(byId)])),
      meshSettings: this.meshSettings,
      authzKeys: new Map(this.authzKeys),
    };
  }

  model(settings: TranslatorSettings = DEFAULT_TRANSLATOR_SETTINGS): MeshModel {
    return buildMeshModel(this.state(), settings);
  }
}
