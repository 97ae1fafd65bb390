// helmet's response headers, computed once. helmet runs a chain of a dozen
// middleware on every response, each setting one header; with the registry's
// static options (no per-request CSP nonces) what they set never changes, so it
// is recorded once at start-up and applied in one pass.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import helmet, { type HelmetOptions } from 'helmet';

/** What helmet does to every response: headers set (in its order) and headers removed. */
export interface HelmetHeaderSet {
  set: ReadonlyArray<readonly [string, string]>;
  remove: ReadonlyArray<string>;
}

/**
 * Runs helmet once against a recording response. Fails at start-up if the options make
 * helmet read the request, finish asynchronously or fail: those headers cannot be precomputed.
 */
export function helmetHeaderSet(options: HelmetOptions): HelmetHeaderSet {
  const set = new Map<string, string>();
  const remove: string[] = [];
  const recorder = {
    setHeader(name: string, value: unknown) {
      if (typeof value !== 'string') throw new Error(`helmet set ${name} to a non-string value`);
      set.set(name, value);
    },
    removeHeader(name: string) {
      set.delete(name);
      remove.push(name);
    },
  };
  const request = new Proxy({} as IncomingMessage, {
    get(_target, property) {
      throw new Error(`these helmet options read the request (${String(property)}): its headers cannot be computed once`);
    },
  });
  let outcome: { err: unknown } | undefined;
  helmet(options)(request, recorder as unknown as ServerResponse, (err?: unknown) => {
    outcome = { err };
  });
  if (!outcome) throw new Error('helmet did not finish synchronously: its headers cannot be computed once');
  if (outcome.err) throw outcome.err;
  return { set: [...set], remove };
}

/** The same headers helmet(options) sets, applied from the set computed once. */
export function securityHeaders(options: HelmetOptions): RequestHandler {
  const { set, remove } = helmetHeaderSet(options);
  return (_req, res, next) => {
    for (const name of remove) res.removeHeader(name);
    for (const [name, value] of set) res.setHeader(name, value);
    next();
  };
}

/** The registry's helmet settings; `https`: the UI is reached over HTTPS. */
export function registryHelmetOptions(https: boolean): HelmetOptions {
  return {
    // Over plain HTTP (local meshes, behind a TLS-terminating proxy that says so) upgrading would break the forms.
    strictTransportSecurity: https,
    contentSecurityPolicy: {
      directives: {
        upgradeInsecureRequests: https ? [] : null,
        defaultSrc: ["'none'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
      },
    },
  };
}
