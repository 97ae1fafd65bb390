// HTTP plumbing shared by the API and the UI: body parsing with clear errors,
// request metrics and logs, and the one error handler that emits problems.
import { createHash } from 'node:crypto';
import express from 'express';
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { ProblemError, sendProblem, zodFieldErrors, type Logger } from '@trellis/runtime';
import { InvalidRecordError, MeshStoreError, takeWrittenJson } from '@trellis/mesh-schema';
import type { z } from 'zod';
import type { RegistryMetrics } from './metrics';
import { EtcdUnavailableError } from './store';
import { problems } from './problem';

/** The middleware every API route puts in front of its handler, built once by the app. */
export interface RouteGuards {
  /** Before reads: authentication when reads require it, else nothing. */
  read: RequestHandler[];
  /** Before writes: authentication. */
  write: RequestHandler[];
  /** Before handlers that take a body: `jsonBody`. */
  json: RequestHandler[];
}

/** JSON bodies only, up to `limit` bytes; other content types are refused with 415. */
export function jsonBody(limit: number): RequestHandler[] {
  const requireJson: RequestHandler = (req, _res, next) => {
    if (!req.headers['content-type'] && !hasBody(req)) return next();
    if (!req.is('application/json') && !req.is('application/*+json')) {
      return next(
        problems.unsupportedMediaType(`send the body as application/json (got ${req.headers['content-type'] ?? 'no Content-Type'})`),
      );
    }
    next();
  };
  const bodyParser = express.json({ limit, strict: true, type: ['application/json', 'application/*+json'] });
  // The usual write — a JSON media type with no parameters, a Content-Length within the
  // limit, no Content-Encoding — is read here: body-parser's charset, decoder and inflation
  // set-up costs it ~15 µs (docs/benchmarks.md, registry). Everything else goes to
  // body-parser. Either way the body, and the error types the problem handler maps, are
  // body-parser's (http.test.ts compares them).
  const readJson: RequestHandler = (req, res, next) => {
    if (isPlainJsonRequest(req, limit)) readPlainJson(req, next);
    else void bodyParser(req, res, next);
  };
  return [requireJson, readJson];
}

function isPlainJsonRequest(req: Request, limit: number): boolean {
  const { headers } = req;
  const type = headers['content-type'];
  const length = headers['content-length'];
  return (
    type !== undefined &&
    !type.includes(';') &&
    headers['content-encoding'] === undefined &&
    headers['transfer-encoding'] === undefined &&
    length !== undefined &&
    /^\d{1,9}$/.test(length) &&
    Number(length) <= limit &&
    // Not read already and still answerable: body-parser passes a finished request on untouched.
    req.readable &&
    (req as { upgrade?: boolean }).upgrade !== true &&
    req.socket?.writable === true
  );
}

/** body-parser's reading of a plain JSON body: UTF-8 without its BOM, `{}` when empty, strict (an object or array). */
function readPlainJson(req: Request, next: (err?: unknown) => void): void {
  const expected = Number(req.headers['content-length']);
  // Usually the whole request is in by now (one segment, parsed while authentication ran):
  // its body is then taken from the stream's buffer at once, without the turns of the
  // event loop that flowing the stream to 'end' costs.
  if (req.complete) {
    const body = (req.read() as Buffer | null) ?? Buffer.alloc(0);
    return setPlainJson(req, body, expected, next);
  }
  const chunks: Buffer[] = [];
  let received = 0;
  const finish = (err?: unknown): void => {
    req.off('data', onData).off('end', onEnd).off('error', finish).off('close', onClose);
    if (err !== undefined) return next(err);
    setPlainJson(req, Buffer.concat(chunks, received), expected, next);
  };
  const onData = (chunk: Buffer): void => {
    received += chunk.length;
    chunks.push(chunk);
  };
  const onEnd = (): void => finish();
  const onClose = (): void => finish(bodyError('request.aborted', 'request aborted'));
  req.on('data', onData).on('end', onEnd).on('error', finish).on('close', onClose);
}

function setPlainJson(req: Request, body: Buffer, expected: number, next: (err?: unknown) => void): void {
  if (body.length !== expected) return next(bodyError('request.size.invalid', 'request size did not match content length'));
  let text = body.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    req.body = parseStrictJson(text);
  } catch {
    return next(bodyError('entity.parse.failed', 'the body is not valid JSON'));
  }
  next();
}

function parseStrictJson(text: string): unknown {
  if (text.length === 0) return {};
  const first = firstNonWhitespace(text);
  if (first !== '{' && first !== '[') throw new SyntaxError('not an object or array');
  return JSON.parse(text) as unknown;
}

/** The first character that is not JSON whitespace (space, tab, LF, CR), or '' for none. */
function firstNonWhitespace(text: string): string {
  for (const char of text) if (char !== ' ' && char !== '\t' && char !== '\n' && char !== '\r') return char;
  return '';
}

/** An error shaped as body-parser's: the problem handler maps it by `type`. */
function bodyError(type: string, message: string): Error {
  return Object.assign(new Error(message), { type, status: 400, statusCode: 400, expose: true });
}

function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** Parses `input` with `schema` or throws a 400 problem naming every bad field. */
export function parseWith<S extends z.ZodType>(schema: S, input: unknown, root = ''): z.infer<S> {
  if (input === undefined) throw problems.validation([{ field: '(body)', message: 'a JSON body is required' }]);
  const result = schema.safeParse(input);
  if (!result.success) throw problems.validation(zodFieldErrors(result.error, root));
  return result.data;
}

/** Parses a path parameter; a bad value is a 400 naming the parameter. */
export function parseParam<S extends z.ZodType>(schema: S, value: unknown, name: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    throw problems.validation(
      result.error.issues.map((issue) => ({ field: name, message: issue.message })),
      `path parameter "${name}" is not valid`,
    );
  }
  return result.data;
}

/** The route template a request matched (`/api/v1/services/:name`), never the raw path. */
export function routeLabel(req: Request): string {
  const route = (req.route as { path?: unknown } | undefined)?.path;
  return typeof route === 'string' ? `${req.baseUrl}${route}` : 'unmatched';
}

export function requestMetrics(metrics: RegistryMetrics, logger: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const labels = { route: routeLabel(req), method: req.method, status: String(res.statusCode) };
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, seconds);
      if (labels.route !== '/healthz' && labels.route !== '/readyz' && labels.route !== '/metrics') {
        logger.debug({ method: req.method, route: labels.route, status: res.statusCode, seconds }, 'request');
      }
    });
    next();
  };
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(problems.notFound(`no route for ${req.method} ${req.path}`));
};

interface BodyParserError {
  type?: string;
  status?: number;
  limit?: number;
  message?: string;
}

/** Turns any error into a problem response; unexpected errors are logged, their details never leak. */
export function problemErrorHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    if (res.headersSent) return next(err);
    const problem = toProblemError(err, logger);
    if (problem.status === 401) res.set('WWW-Authenticate', 'Bearer realm="trellis-registry"');
    sendProblem(res, problem, req.originalUrl);
  };
}

function toProblemError(err: unknown, logger: Logger): ProblemError {
  if (err instanceof ProblemError) return err;
  const bodyError = err as BodyParserError;
  switch (bodyError?.type) {
    case 'entity.too.large':
      return problems.tooLarge(bodyError.limit ?? 0);
    case 'entity.parse.failed':
      return problems.malformedJson('the body is not valid JSON');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return problems.unsupportedMediaType(bodyError.message ?? 'unsupported encoding');
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return problems.validation(
        [{ field: '(body)', message: bodyError.message ?? 'the body could not be read' }],
        'the body could not be read',
      );
  }
  // Other client errors from express itself (e.g. a path parameter that is not valid percent-encoding).
  if (typeof bodyError?.status === 'number' && bodyError.status >= 400 && bodyError.status < 500) {
    const detail = bodyError.message ?? 'the request is not valid';
    return new ProblemError(bodyError.status, 'bad-request', 'Bad request', detail, [{ field: '(request)', message: detail }]);
  }
  if (err instanceof InvalidRecordError) {
    return problems.validation(
      err.issues.map((message) => ({ field: '(body)', message })),
      'the record is not valid',
    );
  }
  if (err instanceof MeshStoreError) {
    // Store errors the routes did not map are still the caller's business, not ours.
    logger.warn({ err }, 'unmapped store error');
    return new ProblemError(409, 'conflict', 'Conflict', err.message);
  }
  if (err instanceof EtcdUnavailableError) {
    logger.error({ err: err.cause, operation: err.operation }, 'etcd operation failed');
    return problems.unavailable('the registry cannot reach etcd; retry later');
  }
  logger.error({ err }, 'unhandled error');
  return problems.internal();
}

/** `If-Match: "42"` → `42`; absent → undefined; anything else is a 400 naming the header. */
export function parseIfMatch(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^\s*"(\d{1,20})"\s*$/.exec(header);
  if (!match)
    throw problems.validation(
      [{ field: 'If-Match', message: 'must be one strong ETag as returned by GET, e.g. "42"' }],
      'bad If-Match header',
    );
  return match[1];
}

/**
 * A write's JSON answer, `{ ...value, ...fields }`: the status, headers and bytes `res.json`
 * sends, without express's `send` — its Content-Type charset parsing and freshness check
 * serve GETs and cost a write ~15 µs (docs/benchmarks.md, registry). The only ETag is the one
 * the route sets (a service's revision, for If-Match): express's weak ETag of the body (a
 * SHA-1 per answer) would tag a registration's 201, which no request can send back —
 * instances take no If-Match or If-None-Match, and the API declares no ETag there. Not for
 * GETs: a 304 for a matching If-None-Match is `send`'s. The app sets no JSON replacer, spaces
 * or escaping.
 */
export function sendWriteJson(res: Response, status: number, value: object, fields: AnswerFields = {}): void {
  const body = jsonWithFields(value, fields);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', typeof body === 'string' ? Buffer.byteLength(body) : body.length);
  res.end(body);
}

/** What a write's answer adds to the record it wrote (its revision, a registration's TTL and heartbeat path). */
export type AnswerFields = Readonly<Record<string, string | number>>;

/**
 * `JSON.stringify({ ...value, ...fields })`. For a record this process has just written the
 * store kept the bytes it wrote (`takeWrittenJson`: `JSON.stringify(value)`), and the answer
 * is those bytes with the fields appended before the closing brace — the same JSON, as
 * spreading puts new keys last — so the record is not serialized a second time. Anything
 * else (no bytes, an empty record, a field the record has or one whose name is an array
 * index, which would sort first) is serialized as it is.
 */
export function jsonWithFields(value: object, fields: AnswerFields): string | Buffer {
  const written = takeWrittenJson(value);
  const names = Object.keys(fields);
  if (written === undefined || written.length <= 2 || names.some((name) => Object.hasOwn(value, name) || ARRAY_INDEX.test(name))) {
    return JSON.stringify(names.length === 0 ? value : { ...value, ...fields });
  }
  if (names.length === 0) return written;
  // `{"a":1}` + `{"modRevision":"42"}` → `{"a":1` + `,` + `"modRevision":"42"}`.
  return Buffer.concat([written.subarray(0, written.length - 1), Buffer.from(`,${JSON.stringify(fields).slice(1)}`)]);
}

/** Property names JavaScript orders before all others (integer keys up to 2^32 - 2). */
const ARRAY_INDEX = /^(?:0|[1-9]\d*)$/;

export function etagOf(modRevision: string): string {
  return `"${modRevision}"`;
}

/** Seconds since the data of a read was known current (0 while the view's etcd watch runs). */
export const VIEW_AGE_HEADER = 'X-Trellis-View-Age';

export function setViewAge(res: Response, ageSeconds: number): void {
  res.set(VIEW_AGE_HEADER, ageSeconds.toFixed(3));
}

const encoded = new WeakMap<object, { body: Buffer; etag: string }>();

/**
 * Sends a value the view shares between reads (the topology) as JSON, encoded and
 * hashed once per value rather than per request; a matching If-None-Match gets 304.
 */
export function sendSharedJson(res: Response, value: object): void {
  let cached = encoded.get(value);
  if (!cached) {
    // A Buffer: express would otherwise copy a long string into one on every send.
    const body = Buffer.from(JSON.stringify(value));
    cached = { body, etag: `"${createHash('sha1').update(body).digest('base64url')}"` };
    encoded.set(value, cached);
  }
  res.set('ETag', cached.etag).type('application/json').send(cached.body);
}
