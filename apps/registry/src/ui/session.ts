// Browser sessions and CSRF protection for the web UI.
//
// Signing in stores the bearer token the user pasted in an HttpOnly,
// SameSite=Strict cookie; it is verified again on every request, so an expired
// or revoked token stops working at once. Every form carries a CSRF token: the
// HMAC, under the server's secret, of a random per-browser nonce (its own
// HttpOnly cookie) and of the session it was issued for (signed double-submit
// cookie bound to the session). A nonce cookie planted from a sibling domain
// together with a token issued to the attacker's own session (or to no session)
// therefore does not verify in the victim's session. POSTs with a foreign Origin
// are refused as well.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';

export const SESSION_COOKIE = 'trellis_session';
export const CSRF_COOKIE = 'trellis_csrf';
export const CSRF_FIELD = '_csrf';
const SESSION_MAX_AGE_MS = 8 * 60 * 60 * 1000;

/** Minimal RFC 6265 cookie header parsing; malformed pairs are skipped. */
export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  if (!header) return cookies;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim();
    if (!name) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    try {
      if (!cookies.has(name)) cookies.set(name, decodeURIComponent(value));
    } catch {
      // A value that is not valid percent-encoding is not ours.
    }
  }
  return cookies;
}

export class UiSessions {
  constructor(
    /** Asked per token: a secret reloaded from TRELLIS_CSRF_SECRET_FILE signs (and checks) from then on. */
    private readonly csrfSecret: () => Buffer,
    private readonly secureCookies: boolean,
  ) {}

  sessionToken(req: Request): string | undefined {
    return parseCookies(req.headers.cookie).get(SESSION_COOKIE);
  }

  signIn(res: Response, token: string): void {
    res.cookie(SESSION_COOKIE, token, {
      httpOnly: true,
      sameSite: 'strict',
      secure: this.secureCookies,
      path: '/',
      maxAge: SESSION_MAX_AGE_MS,
    });
  }

  signOut(res: Response): void {
    res.clearCookie(SESSION_COOKIE, { httpOnly: true, sameSite: 'strict', secure: this.secureCookies, path: '/' });
  }

  /**
   * The CSRF token to embed in this response's forms, setting the nonce cookie when the
   * browser has none. `session`: the verified session token of this request (none when
   * signed out); the token is valid only in that session.
   */
  csrfToken(req: Request, res: Response, session: string | undefined): string {
    let nonce = parseCookies(req.headers.cookie).get(CSRF_COOKIE);
    if (!nonce || !/^[A-Za-z0-9_-]{43}$/.test(nonce)) {
      nonce = randomBytes(32).toString('base64url');
      res.cookie(CSRF_COOKIE, nonce, { httpOnly: true, sameSite: 'strict', secure: this.secureCookies, path: '/' });
    }
    return this.sign(nonce, session);
  }

  /** Whether a form POST carries a valid CSRF token for `session` (the request's verified session, if any) and, if the browser sent one, our own Origin. */
  verifyCsrf(req: Request, session: string | undefined): { ok: true } | { ok: false; reason: string } {
    const origin = req.headers.origin;
    if (origin && origin !== 'null') {
      let host: string;
      try {
        host = new URL(origin).host;
      } catch {
        return { ok: false, reason: 'malformed Origin header' };
      }
      if (host !== req.headers.host) return { ok: false, reason: `cross-origin form post from ${origin}` };
    }
    const nonce = parseCookies(req.headers.cookie).get(CSRF_COOKIE);
    const sent = (req.body as Record<string, unknown> | undefined)?.[CSRF_FIELD];
    if (!nonce || typeof sent !== 'string') return { ok: false, reason: 'missing CSRF token' };
    const expected = Buffer.from(this.sign(nonce, session));
    const actual = Buffer.from(sent);
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return { ok: false, reason: 'CSRF token does not match' };
    return { ok: true };
  }

  private sign(nonce: string, session: string | undefined): string {
    // The session enters as its digest (base64url, no '.'; '-' for none), so no two (nonce, session) pairs sign alike.
    const bound = createHash('sha256')
      .update(session ?? '')
      .digest('base64url');
    return createHmac('sha256', this.csrfSecret())
      .update(`${nonce}.${session === undefined ? '-' : bound}`)
      .digest('base64url');
  }
}
