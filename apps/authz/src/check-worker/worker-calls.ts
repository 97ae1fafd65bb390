// Both ends of what the worker asks the main thread: the worker's verifiers (calls)
// and the main thread's answers, from the very objects a main-thread Check uses.
import type { TokenVerification } from '@trellis/mesh-contracts';
import type { AccessVerifier, CheckTokens, InboundVerifier } from '../check/check-service';
import type { AccessApplication, AccessVerification } from '../edge/cloudflare-access';
import { NoSigningKeyError } from '../tokens/token-issuer';
import { MainThreadCallError, type MainThreadCalls } from './main-thread-calls';
import type { CallReply, WorkerCall } from './protocol';

/** Inbound token verification by the main thread (it holds the key ring). */
export function inboundVerifierVia(calls: Pick<MainThreadCalls, 'call'>): InboundVerifier {
  return {
    async verify(token: string | undefined, audience: string): Promise<TokenVerification> {
      const reply = await calls.call({ kind: 'verify', token, audience });
      if (reply.ok && 'verification' in reply) return reply.verification;
      throw new MainThreadCallError(reply.ok ? 'the main thread answered a verify call with something else' : reply.message);
    },
  };
}

/** Cloudflare Access verification by the main thread (it fetches and caches the teams' certs). */
export function accessVerifierVia(calls: Pick<MainThreadCalls, 'call'>): AccessVerifier {
  return {
    async verify(token: string | undefined, app: AccessApplication): Promise<AccessVerification> {
      const reply = await calls.call({ kind: 'access', token, app });
      if (reply.ok && 'access' in reply) return reply.access;
      throw new MainThreadCallError(reply.ok ? 'the main thread answered an access call with something else' : reply.message);
    },
  };
}

export interface CallAnswerers {
  tokens: Pick<CheckTokens, 'tokenFor'>;
  verifier: InboundVerifier;
  access: AccessVerifier;
}

/** The main thread's answer to one worker call; never rejects (a failure is a reply). */
export async function answerWorkerCall(call: WorkerCall, answerers: CallAnswerers): Promise<CallReply> {
  try {
    switch (call.kind) {
      case 'token':
        return { ok: true, token: await answerers.tokens.tokenFor(call.source, call.destination) };
      case 'verify':
        return { ok: true, verification: await answerers.verifier.verify(call.token, call.audience) };
      case 'access':
        return { ok: true, access: await answerers.access.verify(call.token, call.app) };
    }
  } catch (err) {
    if (err instanceof NoSigningKeyError) return { ok: false, error: 'no-signing-key', message: err.message };
    return { ok: false, error: 'failed', message: err instanceof Error ? err.message : String(err) };
  }
}
