import { checkRequestPath } from './request-path';

describe('checkRequestPath', () => {
  it.each(['/', '/admin', '/admin/users?x=1', '/a/b/', '/files/report%20final.pdf', '/a%3Bb', '/~user/x.y-z_'])(
    'accepts the normal form %s',
    (path) => {
      expect(checkRequestPath(path)).toEqual({ canonical: true, path: path.split('?')[0] });
    },
  );

  it.each([
    ['//admin', 'empty segment'],
    ['/portal//admin', 'empty segment'],
    ['/%61dmin', 'percent-encodes "a"'],
    ['/%2e/admin', 'percent-encodes "."'],
    ['/./admin', '"." or ".."'],
    ['/x/../admin', '"." or ".."'],
    ['/admin;x', '";" parameters'],
    ['/admin%2Fusers', 'encoded slash'],
    ['/admin%5cusers', 'encoded slash'],
    ['/admin\\users', '"\\"'],
    ['/admin%zz', 'malformed percent escape'],
    ['/admin%', 'malformed percent escape'],
    ['/admin\r\nx', 'control'],
    ['admin', 'start with "/"'],
  ])('refuses %s', (path, why) => {
    const result = checkRequestPath(path);
    expect(result.canonical).toBe(false);
    expect(!result.canonical && result.why).toContain(why);
  });
});
