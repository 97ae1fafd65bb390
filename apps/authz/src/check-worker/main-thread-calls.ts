// The worker's side of its calls to the main thread: one request, one reply, matched
// by id, with a deadline. A call that is not answered in time (a busy or stuck main
// thread) rejects, and the Check it serves is denied like any failed lookup (503).
import type { CallReply, WorkerCall, WorkerToMain } from './protocol';

export class MainThreadCalls {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(reply: CallReply): void; reject(err: Error): void; timer: NodeJS.Timeout }>();

  constructor(
    private readonly post: (message: WorkerToMain) => void,
    private readonly timeoutMs: number,
  ) {}

  call(call: WorkerCall): Promise<CallReply> {
    const id = this.nextId++;
    return new Promise<CallReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`the main thread did not answer a ${call.kind} call within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.post({ type: 'call', id, call });
    });
  }

  /** The main thread's reply to call `id` (a reply after the deadline is dropped). */
  settle(id: number, reply: CallReply): void {
    const waiting = this.pending.get(id);
    if (!waiting) return;
    this.pending.delete(id);
    clearTimeout(waiting.timer);
    waiting.resolve(reply);
  }

  /** Rejects every call still waiting (the worker is stopping). */
  abandon(reason: string): void {
    for (const [id, waiting] of this.pending) {
      this.pending.delete(id);
      clearTimeout(waiting.timer);
      waiting.reject(new Error(reason));
    }
  }
}

/** The error a failed reply stands for. */
export class MainThreadCallError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MainThreadCallError';
  }
}
