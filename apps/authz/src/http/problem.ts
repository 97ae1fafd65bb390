import type { Response } from 'express';

/** An RFC 9457 problem+json response; `extra` names the field or reason when there is one. */
export function problem(res: Response, status: number, title: string, detail: string, extra: Record<string, unknown> = {}): void {
  res
    .status(status)
    .type('application/problem+json')
    .send(JSON.stringify({ type: 'about:blank', title, status, detail, ...extra }));
}
