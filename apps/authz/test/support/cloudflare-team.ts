// Plays a Cloudflare Access team for tests: serves `/cdn-cgi/access/certs` on
// 127.0.0.1:0 with the team's current signing keys, signs Access JWTs the way
// Cloudflare does (RS256, iss = https://<team domain>, aud = [application AUD]),
// and rotates keys on demand.
import { createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { exportJWK, SignJWT } from 'jose';

interface RsaShape {
  modulusLength: number;
  publicExponent?: number;
}

interface TeamKey {
  kid: string;
  privateKey: KeyObject;
  jwk: Record<string, unknown>;
}

export class FakeCloudflareTeam {
  readonly teamDomain = 'acme.cloudflareaccess.com';
  private keys: TeamKey[] = [];
  private server!: Server;
  certsRequests = 0;
  /** Answer certs requests with this status instead (simulates an outage). */
  failWith: number | undefined;

  static async start(): Promise<FakeCloudflareTeam> {
    const team = new FakeCloudflareTeam();
    await team.rotate();
    team.server = createServer((req, res) => {
      if (req.url !== `/${team.teamDomain}/cdn-cgi/access/certs`) return void res.writeHead(404).end();
      team.certsRequests += 1;
      if (team.failWith) return void res.writeHead(team.failWith).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: team.keys.map((k) => k.jwk) }));
    });
    await new Promise<void>((resolve) => team.server.listen(0, '127.0.0.1', resolve));
    return team;
  }

  /** `TRELLIS_CLOUDFLARE_CERTS_URL_TEMPLATE` pointing here: the team domain becomes the first path segment. */
  get certsUrlTemplate(): string {
    const { port } = this.server.address() as { port: number };
    return `http://127.0.0.1:${port}/{teamDomain}/cdn-cgi/access/certs`;
  }

  /** Adds a new current key (and drops the old ones when asked); `rsa` makes it another shape than Cloudflare's. */
  async rotate({ dropOld = false, rsa = { modulusLength: 2048 } }: { dropOld?: boolean; rsa?: RsaShape } = {}): Promise<string> {
    const { privateKey } = generateKeyPairSync('rsa', rsa);
    const kid = randomUUID().replace(/-/g, '');
    const publicJwk = { ...(await exportJWK(createPublicKey(privateKey))), kid, alg: 'RS256', use: 'sig' };
    this.keys = [...(dropOld ? [] : this.keys), { kid, privateKey, jwk: publicJwk }];
    return kid;
  }

  /** A user's Access JWT (or a service token's, with `commonName`). */
  sign(
    audience: string,
    opts: {
      email?: string;
      commonName?: string;
      issuer?: string;
      expiresInSeconds?: number;
      /** Seconds from now to put in `iat` (exp counts from it). */
      issuedInSeconds?: number;
      omitExp?: boolean;
      kid?: string;
      key?: KeyObject;
    } = {},
  ): Promise<string> {
    const key = opts.kid ? this.keys.find((k) => k.kid === opts.kid)! : this.keys[this.keys.length - 1]!;
    const now = Math.floor(Date.now() / 1000);
    const iat = now + (opts.issuedInSeconds ?? 0);
    const claims: Record<string, unknown> = opts.commonName
      ? { common_name: opts.commonName, type: 'app' }
      : { email: opts.email ?? 'ada@example.com', type: 'app', identity_nonce: 'n' };
    const jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: key.kid })
      .setIssuer(opts.issuer ?? `https://${this.teamDomain}`)
      .setAudience([audience])
      .setSubject(opts.commonName ? '' : randomUUID())
      .setIssuedAt(iat)
      .setNotBefore(now);
    return (opts.omitExp ? jwt : jwt.setExpirationTime(iat + (opts.expiresInSeconds ?? 3600))).sign(opts.key ?? key.privateKey);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
