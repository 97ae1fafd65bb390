// The SDK applies the mesh's one set of token rules (@trellis/mesh-contracts'
// verifyMeshToken, as authz does): each case here is an attack a proxyless
// service must turn away exactly as authz would.
import { generateKeyPair, SignJWT, type CryptoKey, type JWTVerifyGetKey } from 'jose';
import { MeshTokenVerifier } from './token-verifier';

let privateKey: CryptoKey;
let keys: JWTVerifyGetKey;
beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  privateKey = pair.privateKey;
  keys = async (header) => {
    if (header.kid !== 'k1') throw new Error('no such key');
    return pair.publicKey;
  };
});

const now = () => Math.floor(Date.now() / 1000);
const sign = ({ aud = 'b', ...claims }: Record<string, unknown>, iat = now(), exp = iat + 900, kid = 'k1') =>
  new SignJWT({ sub: 'a', ...claims })
    .setProtectedHeader({ alg: 'RS256', kid })
    .setIssuer('trellis')
    .setAudience(aud as string)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(privateKey);

describe('MeshTokenVerifier (SDK)', () => {
  const verifier = () => new MeshTokenVerifier({ service: 'b', issuer: 'trellis', keys, isAllowedCaller: (c) => c === 'a' });

  it('admits a declared caller with a token minted for this service', async () => {
    await expect(verifier().verify(`Bearer ${await sign({})}`)).resolves.toMatchObject({ caller: 'a', keyId: 'k1' });
  });

  it.each([
    ['a token claiming a life beyond the mesh maximum', async () => sign({}, now(), now() + 2 * 86_400), 'invalid-claims'],
    ['an oversized token', async () => sign({ pad: 'x'.repeat(5000) }), 'oversized'],
    ['a token signed with a kid nobody published', async () => sign({}, now(), now() + 900, 'k2'), 'unknown-kid'],
    ['a token for another service', async () => sign({ aud: 'c' }), 'wrong-audience'],
    ['an unsigned token', async () => `${(await sign({})).split('.').slice(0, 2).join('.')}.`, 'malformed'],
  ])('refuses %s', async (_what, token, code) => {
    await expect(verifier().verify(`Bearer ${await token()}`)).rejects.toMatchObject({ code });
  });

  it('refuses a valid token from a caller that did not declare this service', async () => {
    await expect(verifier().verify(`Bearer ${await sign({ sub: 'c' })}`)).rejects.toMatchObject({ code: 'undeclared-caller' });
  });
});
