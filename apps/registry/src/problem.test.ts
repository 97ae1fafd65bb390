import { problems } from './problem';

describe('problems', () => {
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

  it('names the header a precondition is about', () => {
    expect(problems.preconditionRequired('send If-Match').errors).toEqual([{ field: 'If-Match', message: 'send If-Match' }]);
  });
});
