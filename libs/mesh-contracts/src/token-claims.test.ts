import { isForwardableClaim, tokenTimeProblem } from './token-claims';

const NOW = 1_800_000_000_000;
const now = NOW / 1000;
const limits = { clockSkewSeconds: 30, maxLifetimeSeconds: 900 };

describe('tokenTimeProblem', () => {
  it.each([
    ['a fresh token', { iat: now, exp: now + 900 }, undefined],
    ['iat just inside the skew', { iat: now + 30, exp: now + 600 }, undefined],
    ['no exp', { iat: now }, 'invalid-claims'],
    ['no iat, a short life left', { exp: now + 60 }, undefined],
    ['no iat, 100 years left', { exp: now + 100 * 365 * 86_400 }, 'invalid-claims'],
    ['a non-numeric iat', { iat: 'now', exp: now + 60 }, 'invalid-claims'],
    ['a non-numeric exp', { iat: now, exp: '9999999999' }, 'invalid-claims'],
    ['iat 10 years ahead', { iat: now + 10 * 365 * 86_400, exp: now + 10 * 365 * 86_400 + 60 }, 'not-yet-valid'],
    ['exp 100 years ahead', { iat: now, exp: now + 100 * 365 * 86_400 }, 'invalid-claims'],
    ['a life one second too long', { iat: now, exp: now + 901 }, 'invalid-claims'],
    ['an expired token', { iat: now - 1000, exp: now - 31 }, 'expired'],
  ])('%s', (_what, payload, reason) => {
    expect(tokenTimeProblem(payload, limits, NOW)?.reason).toBe(reason);
  });
});

describe('isForwardableClaim', () => {
  it.each(['alice@example.com', 'é@exämple.com', 'client-id.access'])('accepts %j', (v) => expect(isForwardableClaim(v)).toBe(true));
  it.each(['', 'a\r\nx-injected: 1', 'a\nb', 'a\u0000b', 'a\u007f', 'x'.repeat(321), 42, undefined])('refuses %j', (v) =>
    expect(isForwardableClaim(v)).toBe(false),
  );
});
