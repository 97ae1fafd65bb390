// The edge Check decides for the path Envoy will route. A path that is not already
// in the normal form Envoy produces (normalize_path, merge_slashes, escaped slashes
// rejected) could be read one way here and another way by Contour, Envoy or the
// application behind them, so it is refused rather than interpreted.

export type PathCheck = { canonical: true; path: string } | { canonical: false; why: string };

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** `path` as Envoy's `:path` (query included); canonical when normalising it changes nothing. */
export function checkRequestPath(rawPath: string): PathCheck {
  const path = rawPath.split('?', 1)[0]!;
  if (!path.startsWith('/')) return { canonical: false, why: 'the path does not start with "/"' };
  if (path.includes('#')) return { canonical: false, why: 'the path carries a fragment' };
  // eslint-disable-next-line no-control-regex -- control characters are exactly what we refuse
  if (/[\x00-\x20\x7f-\uffff\\]/.test(path)) return { canonical: false, why: 'the path has a control, non-ASCII, space or "\\" character' };
  if (path.includes(';')) return { canonical: false, why: 'the path has ";" parameters, which servers split differently' };
  if (path.includes('//')) return { canonical: false, why: 'the path has an empty segment ("//")' };
  for (const match of path.matchAll(/%(..)?/g)) {
    const hex = match[1];
    if (!hex || !/^[0-9A-Fa-f]{2}$/.test(hex)) return { canonical: false, why: 'the path has a malformed percent escape' };
    const char = String.fromCharCode(parseInt(hex, 16));
    if (UNRESERVED.test(char)) return { canonical: false, why: `the path percent-encodes "${char}", which needs no encoding` };
    if (char === '/' || char === '\\') return { canonical: false, why: 'the path has an encoded slash' };
  }
  const segments = path.split('/');
  if (segments.some((s) => s === '.' || s === '..')) return { canonical: false, why: 'the path has a "." or ".." segment' };
  return { canonical: true, path };
}
