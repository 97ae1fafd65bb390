import type { AuthzPublicKey } from '@trellis/mesh-schema';
import { keyState, planKeySchedule, selectSigner } from './key-schedule';
import { generateSigningKey, type SigningKey } from './signing-key';

const T0 = Date.UTC(2026, 0, 1);
const options = { publishLeadSeconds: 300, tokenTtlSeconds: 900, clockSkewSeconds: 30 };
const at = (seconds: number) => T0 + seconds * 1000;
const iso = (seconds: number) => new Date(at(seconds)).toISOString();

describe('key schedule', () => {
  let k1: SigningKey;
  let k2: SigningKey;
  beforeAll(async () => {
    [k1, k2] = await Promise.all([generateSigningKey('RS256', 'k1.pem'), generateSigningKey('ES256', 'k2.pem')]);
  });

  it('activates the very first key at once: no validator holds any key yet', () => {
    const plan = planKeySchedule([k1], [], at(0), options);
    expect(plan).toEqual({ puts: [{ kid: k1.kid, jwk: k1.publicJwk, publishedAt: iso(0), activeFrom: iso(0) }], deletes: [] });
    expect(selectSigner(new Set([k1.kid]), plan.puts, at(0))?.kid).toBe(k1.kid);
  });

  it('publishes a new key one lead time before it signs, then retires the old one with overlap', () => {
    const first: AuthzPublicKey = { kid: k1.kid, jwk: k1.publicJwk, publishedAt: iso(0), activeFrom: iso(0) };
    const local = new Set([k1.kid, k2.kid]);

    // Rotation starts at t=1000: k2 published, pending; k1 keeps signing.
    const rotation = planKeySchedule([k1, k2], [first], at(1000), options);
    expect(rotation.puts).toEqual([{ kid: k2.kid, jwk: k2.publicJwk, publishedAt: iso(1000), activeFrom: iso(1300) }]);
    const published = [first, ...rotation.puts];
    expect(keyState(rotation.puts[0]!, at(1000))).toBe('pending');
    expect(selectSigner(local, published, at(1299))?.kid).toBe(k1.kid);

    // t=1300: k2 signs; k1 verifies until every token it signed expired (+ skew).
    expect(selectSigner(local, published, at(1300))?.kid).toBe(k2.kid);
    const retire = planKeySchedule([k1, k2], published, at(1300), options);
    expect(retire).toEqual({ puts: [{ ...first, retireAfter: iso(1300 + 900 + 30) }], deletes: [] });

    // Nothing more to do until the retirement time, then k1 is deleted.
    const afterRetire = [retire.puts[0]!, rotation.puts[0]!];
    expect(planKeySchedule([k2], afterRetire, at(2229), options)).toEqual({ puts: [], deletes: [] });
    expect(planKeySchedule([k2], afterRetire, at(2230), options)).toEqual({ puts: [], deletes: [k1.kid] });
  });

  it('never signs with a key it has only the public half of, or one that is superseded', () => {
    const published: AuthzPublicKey[] = [
      { kid: k1.kid, jwk: k1.publicJwk, publishedAt: iso(0), activeFrom: iso(0), retireAfter: iso(2000) },
      { kid: k2.kid, jwk: k2.publicJwk, publishedAt: iso(0), activeFrom: iso(300) },
    ];
    expect(selectSigner(new Set([k1.kid]), published, at(500))).toBeUndefined();
    expect(selectSigner(new Set([k1.kid, k2.kid]), published, at(500))?.kid).toBe(k2.kid);
  });

  it('is idempotent: a replica reconciling a converged state writes nothing', () => {
    const published: AuthzPublicKey[] = [{ kid: k1.kid, jwk: k1.publicJwk, publishedAt: iso(0), activeFrom: iso(0) }];
    expect(planKeySchedule([k1], published, at(10), options)).toEqual({ puts: [], deletes: [] });
  });
});
