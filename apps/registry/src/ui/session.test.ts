import type { Request } from 'express';
import { CSRF_COOKIE, parseCookies, UiSessions } from './session';

const fakeResponse = () => {
  const cookies: Record<string, string> = {};
  return { cookies, res: { cookie: (name: string, value: string) => (cookies[name] = value) } };
};
const request = (headers: Record<string, string>, body: Record<string, unknown> = {}) => ({ headers, body }) as unknown as Request;

describe('parseCookies', () => {
  it('parses pairs, decodes values and skips malformed ones', () => {
    const cookies = parseCookies('a=1; b="two%20words"; bad; =x; c=%E0%A4%A; a=shadowed');
    expect([...cookies]).toEqual([
      ['a', '1'],
      ['b', 'two words'],
    ]);
  });
});

describe('UiSessions CSRF', () => {
  const sessions = new UiSessions(() => Buffer.from('s'.repeat(32)), false);

  it('issues a nonce cookie and accepts the token signed for it', () => {
    const { cookies, res } = fakeResponse();
    const token = sessions.csrfToken(request({}), res as never, undefined);
    const nonce = cookies[CSRF_COOKIE]!;
    expect(nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(sessions.verifyCsrf(request({ cookie: `${CSRF_COOKIE}=${nonce}`, host: 'r:8080' }, { _csrf: token }), undefined)).toEqual({
      ok: true,
    });
  });

  it('refuses a missing or foreign token and a cross-origin post', () => {
    const { cookies, res } = fakeResponse();
    const token = sessions.csrfToken(request({}), res as never, undefined);
    const cookie = `${CSRF_COOKIE}=${cookies[CSRF_COOKIE]}`;
    expect(sessions.verifyCsrf(request({ cookie, host: 'r:8080' }, {}), undefined)).toMatchObject({ ok: false });
    expect(
      sessions.verifyCsrf(request({ cookie: `${CSRF_COOKIE}=${'x'.repeat(43)}`, host: 'r:8080' }, { _csrf: token }), undefined),
    ).toMatchObject({
      ok: false,
    });
    expect(
      sessions.verifyCsrf(request({ cookie, host: 'r:8080', origin: 'https://evil.example' }, { _csrf: token }), undefined),
    ).toMatchObject({
      ok: false,
      reason: 'cross-origin form post from https://evil.example',
    });
    expect(sessions.verifyCsrf(request({ cookie, host: 'r:8080', origin: 'http://r:8080' }, { _csrf: token }), undefined)).toEqual({
      ok: true,
    });
  });

  it('binds a token to the session it was issued for', () => {
    const { cookies, res } = fakeResponse();
    const token = sessions.csrfToken(request({}), res as never, 'session-a');
    const cookie = `${CSRF_COOKIE}=${cookies[CSRF_COOKIE]}`;
    const post = (session: string | undefined) => sessions.verifyCsrf(request({ cookie, host: 'r:8080' }, { _csrf: token }), session);
    expect(post('session-a')).toEqual({ ok: true });
    expect(post('session-b')).toMatchObject({ ok: false, reason: 'CSRF token does not match' });
    expect(post(undefined)).toMatchObject({ ok: false });
  });
});
