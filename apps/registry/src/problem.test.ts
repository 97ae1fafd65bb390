import { z } from 'zod';
import { fieldPath, problems, zodFieldErrors } from './problem';

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
  it('renders RFC 9457 members and extensions', () => {
    expect(problems.conflict('still used', { dependents: ['a'] }).toProblem('/api/v1/services/x')).toEqual({
      type: 'https://trellis.dev/problems/conflict',
      title: 'Conflict',
      status: 409,
      detail: 'still used',
      instance: '/api/v1/services/x',
      dependents: ['a'],
    });
  });
});
