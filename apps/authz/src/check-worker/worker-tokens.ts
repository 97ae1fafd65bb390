// The Check worker's token cache: the tokens the main thread handed it, by (source,
// destination, kid), handed out under MeshTokenIssuer's rule (usableToken: signed by the key that
// signs now, for the current issuer, before its useUntil).
// A miss asks the main thread, which looks in its own memory, then Redis, then signs
// (single-flight there too); the reply is kept here. Concurrent misses for one pair
// in the worker share one call.
import type { AuthzMetrics } from '../metrics';
import { PairTokenMemory } from '../tokens/pair-token-memory';
import { SingleFlight } from '../tokens/single-flight';
import { NoSigningKeyError, usableToken, type CachedToken } from '../tokens/token-issuer';
import type { CheckTokens } from '../check/check-service';
import { MainThreadCallError, type MainThreadCalls } from './main-thread-calls';
import type { SignerMessage } from './protocol';

export class WorkerTokens implements CheckTokens {
  private readonly memory: PairTokenMemory<CachedToken>;
  private readonly flights = new SingleFlight<CachedToken>();
  private signer: SignerMessage | undefined;
  private readonly memoryHits: { inc(): void };

  constructor(
    private readonly calls: Pick<MainThreadCalls, 'call'>,
    metrics: AuthzMetrics,
    maxEntries = 10_000,
    private readonly clock: () => number = Date.now,
  ) {
    this.memory = new PairTokenMemory(maxEntries);
    this.memoryHits = metrics.tokenCacheCounter('memory', 'hit');
  }

  /** The key that signs now and the issuer, as the main thread last said. */
  setSigner(signer: SignerMessage): void {
    this.signer = signer;
  }

  cachedToken(source: string, destination: string): CachedToken | undefined {
    const signer = this.signer;
    if (signer?.kid === undefined) return undefined;
    const cached = usableToken(this.memory, source, destination, signer.kid, signer.issuer, this.clock());
    if (cached) this.memoryHits.inc();
    return cached;
  }

  async tokenFor(source: string, destination: string): Promise<CachedToken> {
    const hit = this.cachedToken(source, destination);
    if (hit) return hit;
    return this.flights.run(`${source}:${destination}`, async () => {
      const reply = await this.calls.call({ kind: 'token', source, destination });
      if (!reply.ok) throw reply.error === 'no-signing-key' ? new NoSigningKeyError() : new MainThreadCallError(reply.message);
      if (!('token' in reply)) throw new MainThreadCallError('the main thread answered a token call with something else');
      this.memory.set(source, destination, reply.token.kid, reply.token);
      return reply.token;
    });
  }
}
