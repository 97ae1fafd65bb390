import { Registry } from 'prom-client';
import { AuthzMetrics } from '../metrics';
import { NoSigningKeyError, type CachedToken } from '../tokens/token-issuer';
import { MainThreadCalls } from './main-thread-calls';
import type { CallReply, WorkerCall, WorkerToMain } from './protocol';
import { answerWorkerCall } from './worker-calls';
import { WorkerTokens } from './worker-tokens';

const NOW = 1_700_000_000_000;
const token = (kid: string, issuer = 'trellis', useUntil = NOW + 60_000): CachedToken => ({
  token: `t.${kid}`,
  kid,
  issuedAt: NOW / 1000,
  expiresAt: NOW / 1000 + 900,
  issuer,
  useUntil,
});

/** A main thread answering token calls with `reply`, counting them. */
function mainThread(reply: () => CallReply | Promise<CallReply>) {
  const calls: WorkerCall[] = [];
  return {
    calls,
    call: async (call: WorkerCall) => {
      calls.push(call);
      return reply();
    },
  };
}

describe('WorkerTokens', () => {
  const metrics = () => new AuthzMetrics(new Registry());

  it('hands out a kept token only for the signing key and issuer the main thread named, before its useUntil', async () => {
    let now = NOW;
    const main = mainThread(() => ({ ok: true, token: token('k1') }));
    const tokens = new WorkerTokens(main, metrics(), 100, () => now);
    tokens.setSigner({ type: 'signer', kid: 'k1', issuer: 'trellis' });
    expect(tokens.cachedToken('a', 'b')).toBeUndefined();
    expect((await tokens.tokenFor('a', 'b')).token).toBe('t.k1');
    expect(main.calls).toEqual([{ kind: 'token', source: 'a', destination: 'b' }]);
    expect(tokens.cachedToken('a', 'b')?.token).toBe('t.k1');
    await tokens.tokenFor('a', 'b');
    expect(main.calls).toHaveLength(1);
    tokens.setSigner({ type: 'signer', kid: 'k2', issuer: 'trellis' });
    expect(tokens.cachedToken('a', 'b')).toBeUndefined();
    tokens.setSigner({ type: 'signer', kid: 'k1', issuer: 'other' });
    expect(tokens.cachedToken('a', 'b')).toBeUndefined();
    tokens.setSigner({ type: 'signer', kid: undefined, issuer: 'trellis' });
    expect(tokens.cachedToken('a', 'b')).toBeUndefined();
    tokens.setSigner({ type: 'signer', kid: 'k1', issuer: 'trellis' });
    now = NOW + 60_000;
    expect(tokens.cachedToken('a', 'b')).toBeUndefined();
  });

  it('asks once for concurrent misses of a pair, and fails as the main thread did', async () => {
    let answer: (reply: CallReply) => void = () => undefined;
    const main = mainThread(() => new Promise<CallReply>((resolve) => (answer = resolve)));
    const tokens = new WorkerTokens(main, metrics(), 100, () => NOW);
    tokens.setSigner({ type: 'signer', kid: 'k1', issuer: 'trellis' });
    const burst = Promise.all([tokens.tokenFor('a', 'b'), tokens.tokenFor('a', 'b'), tokens.tokenFor('a', 'b')]);
    await Promise.resolve();
    answer({ ok: true, token: token('k1') });
    expect(new Set((await burst).map((t) => t.token))).toEqual(new Set(['t.k1']));
    expect(main.calls).toHaveLength(1);

    const refusing = new WorkerTokens(
      mainThread(() => ({ ok: false, error: 'no-signing-key', message: 'no signing key is active' })),
      metrics(),
    );
    await expect(refusing.tokenFor('a', 'b')).rejects.toBeInstanceOf(NoSigningKeyError);
    const failing = new WorkerTokens(
      mainThread(() => ({ ok: false, error: 'failed', message: 'boom' })),
      metrics(),
    );
    await expect(failing.tokenFor('a', 'b')).rejects.toThrow('boom');
  });
});

describe('MainThreadCalls', () => {
  it('matches replies by id and rejects a call not answered in time', async () => {
    jest.useFakeTimers();
    try {
      const posted: WorkerToMain[] = [];
      const calls = new MainThreadCalls((m) => posted.push(m), 1_000);
      const first = calls.call({ kind: 'verify', token: 'x', audience: 'b' });
      const second = calls.call({ kind: 'token', source: 'a', destination: 'b' });
      expect(posted.map((m) => m.type === 'call' && m.id)).toEqual([1, 2]);
      calls.settle(2, { ok: false, error: 'failed', message: 'second' });
      await expect(second).resolves.toEqual({ ok: false, error: 'failed', message: 'second' });
      jest.advanceTimersByTime(1_000);
      await expect(first).rejects.toThrow('did not answer a verify call within 1000 ms');
      calls.settle(1, { ok: false, error: 'failed', message: 'late' }); // dropped
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('answerWorkerCall', () => {
  it("answers with what the main thread's objects return, and turns their failures into replies", async () => {
    const verification = { valid: false as const, reason: 'expired' as const, detail: 'x' };
    const answerers = {
      tokens: { tokenFor: async () => token('k1') },
      verifier: { verify: async () => verification },
      access: { verify: async () => ({ valid: false as const, reason: 'certs-unavailable' as const }) },
    };
    expect(await answerWorkerCall({ kind: 'token', source: 'a', destination: 'b' }, answerers)).toEqual({ ok: true, token: token('k1') });
    expect(await answerWorkerCall({ kind: 'verify', token: 't', audience: 'b' }, answerers)).toEqual({ ok: true, verification });
    expect(await answerWorkerCall({ kind: 'access', token: 't', app: { teamDomain: 'x', audience: 'y' } }, answerers)).toEqual({
      ok: true,
      access: { valid: false, reason: 'certs-unavailable' },
    });
    const noKey = { ...answerers, tokens: { tokenFor: () => Promise.reject(new NoSigningKeyError()) } };
    expect(await answerWorkerCall({ kind: 'token', source: 'a', destination: 'b' }, noKey)).toMatchObject({
      ok: false,
      error: 'no-signing-key',
    });
    const broken = { ...answerers, verifier: { verify: () => Promise.reject(new Error('boom')) } };
    expect(await answerWorkerCall({ kind: 'verify', token: 't', audience: 'b' }, broken)).toEqual({
      ok: false,
      error: 'failed',
      message: 'boom',
    });
  });
});
