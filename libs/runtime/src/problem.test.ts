import express from 'express';
import { z } from 'zod';
import { listenHttp, closeHttpServer } from './http-server';
import { fieldPath, PROBLEM_TYPE_BASE, ProblemError, sendProblem, zodFieldErrors } from './problem';

describe('fieldPath', () => {
  it('renders array indexes in brackets', () => {
    expect(fieldPath(['dependencies', 0, 'service'])).toBe('dependencies[0].service');
    expect(fieldPath([])).toBe('(body)');
    expect(fieldPath([2], 'items')).toBe('items[2]');
  });
});

describe('zodFieldErrors', () => {
  it('names every unknown key as its own field', () => {
    const schema = z.object({ a: z.object({ b: z.number() }).strict() }).strict();
    const result = schema.safeParse({ a: { b: 'x', c: 1 }, d: 2 });
    expect(result.success).toBe(false);
    if (result.success) return;
    expect(
      zodFieldErrors(result.error)
        .map((e) => e.field)
        .sort(),
    ).toEqual(['a.b', 'a.c', 'd']);
  });
});

describe('ProblemError', () => {
  it('renders RFC 9457 members, the field errors and extensions', () => {
    const problem = new ProblemError(409, 'conflict', 'Conflict', 'still used', undefined, { dependents: ['a'] });
    expect(problem.toProblem('/api/v1/services/x')).toEqual({
      type: 'https://trellis.dev/problems/conflict',
      title: 'Conflict',
      status: 409,
      detail: 'still used',
      instance: '/api/v1/services/x',
      dependents: ['a'],
    });
    expect(ProblemError.field(400, 'invalid-query', 'Invalid query', 'kind', 'must be "envoy"').toProblem()).toEqual({
      type: `${PROBLEM_TYPE_BASE}invalid-query`,
      title: 'Invalid query',
      status: 400,
      detail: 'must be "envoy"',
      errors: [{ field: 'kind', message: 'must be "envoy"' }],
    });
  });

  it('is written as application/problem+json with its status', async () => {
    const app = express();
    app.get('/x', (req, res) => sendProblem(res, ProblemError.field(400, 'validation', 'Invalid request', 'q', 'required'), req.path));
    const { server, port } = await listenHttp(app, '127.0.0.1', 0);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/x`);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(await res.json()).toMatchObject({ type: `${PROBLEM_TYPE_BASE}validation`, instance: '/x', errors: [{ field: 'q' }] });
    } finally {
      await closeHttpServer(server, 1_000);
    }
  });
});
