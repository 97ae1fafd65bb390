import type { IncomingMessage, RequestOptions, Server, ServerResponse } from 'node:http';
import type { request as httpRequest } from 'node:http';

/** The prototypes Node gave each request and response, recorded ahead of the server's own listeners (before express touches them). */
export function recordRequestPrototypes(server: Server): { request: object | null; response: object | null }[] {
  const seen: { request: object | null; response: object | null }[] = [];
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    seen.push({ request: Object.getPrototypeOf(req) as object, response: Object.getPrototypeOf(res) as object });
  });
  return seen;
}

/** A POST of `body` as JSON through node:http's or node:https's `request`, resolving with the status, one header and the body text. */
export function postJson(
  send: typeof httpRequest,
  options: RequestOptions,
  body: unknown,
  header: string,
): Promise<{ status: number; header: unknown; body: string }> {
  return new Promise((resolve, reject) => {
    const req = send({ ...options, method: 'POST', headers: { 'content-type': 'application/json', ...options.headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, header: res.headers[header], body: text }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
