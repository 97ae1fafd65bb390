// The ADS server's connection age without a transport (a fake HTTP/2 session; the real one, with
// grpc-js clients, is test/connection-limits.test.ts): one age per connection, from its first ADS
// stream; at it the GOAWAY, then every ADS stream still open on it ends; the grace's cut after (none
// without a grace: the client closes the connection).
import { EventEmitter } from 'node:events';
import type { ServerHttp2Session } from 'node:http2';
import { backstopAgeMs, ConnectionAges } from './connection-age';

class FakeSession extends EventEmitter {
  closed = false;
  destroyed = false;
  readonly calls: string[] = [];
  goaway(code: number, lastStreamId: number, data: Buffer): void {
    this.calls.push(`goaway ${code} ${lastStreamId} ${data.toString()}`);
  }
  close(): void {
    this.closed = true;
    this.calls.push('close');
  }
  destroy(): void {
    this.destroyed = true;
    this.calls.push('destroy');
  }
  asSession(): ServerHttp2Session {
    return this as unknown as ServerHttp2Session;
  }
}

describe('ConnectionAges', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('sends GOAWAY, then ends the streams still open on the connection, then cuts it after the grace', () => {
    const aged: number[] = [];
    const ages = new ConnectionAges({ maxAgeMs: 1_000, graceMs: 500 }, (streams) => aged.push(streams));
    const session = new FakeSession();
    const ended: string[] = [];
    const end = (name: string) => () => {
      ended.push(name);
      session.calls.push(`end ${name}`);
    };
    ages.track(session.asSession(), end('a'));
    const releaseB = ages.track(session.asSession(), end('b'));
    jest.advanceTimersByTime(500);
    ages.track(session.asSession(), end('c')); // the same connection: aged from its first stream, not from this one
    releaseB(); // b ended otherwise

    jest.advanceTimersByTime(1_100 - 500);
    expect(session.calls).toEqual([`goaway 0 ${2 ** 31 - 1} max_age`, 'end a', 'end c']);
    expect(aged).toEqual([2]);
    jest.advanceTimersByTime(500);
    expect(session.calls.at(-1)).toBe('destroy');
  });

  it('gives each connection its own age, and none to a connection that closed', () => {
    const ages = new ConnectionAges({ maxAgeMs: 1_000, graceMs: 0 });
    const [first, second] = [new FakeSession(), new FakeSession()];
    const ended: string[] = [];
    ages.track(first.asSession(), () => ended.push('first'));
    jest.advanceTimersByTime(500);
    ages.track(second.asSession(), () => ended.push('second'));
    first.emit('close');
    jest.advanceTimersByTime(1_399 - 500); // before the second's earliest age (500 + 900)
    expect(first.calls).toEqual([]);
    expect(ended).toEqual([]);
    jest.advanceTimersByTime(1_600 - 1_399);
    expect(ended).toEqual(['second']);
    // No grace: the GOAWAY and the streams' statuses, no cut under them.
    jest.advanceTimersByTime(10_000);
    expect(second.calls).toEqual([`goaway 0 ${2 ** 31 - 1} max_age`]);
  });

  it('ends a stream that arrives on the connection after its age, sent before the client read the GOAWAY', () => {
    const ages = new ConnectionAges({ maxAgeMs: 1_000, graceMs: 0 });
    const session = new FakeSession();
    const ended: string[] = [];
    ages.track(session.asSession(), () => ended.push('first'));
    jest.advanceTimersByTime(1_100);
    expect(ended).toEqual(['first']);
    const release = ages.track(session.asSession(), () => ended.push('late'));
    expect(ended).toEqual(['first']); // not from inside track(): its caller is still setting the stream up
    jest.advanceTimersByTime(1);
    expect(ended).toEqual(['first', 'late']);
    release();
    // One GOAWAY per connection: the late stream ends without another.
    expect(session.calls).toEqual([`goaway 0 ${2 ** 31 - 1} max_age`]);
  });

  it("gives grpc-js's own age, the backstop, a range wholly after this one's (±10 % each), by a quarter of the age", () => {
    // grpc-js counts from the connection's start, ConnectionAges from its first ADS stream: the margin is for that stream's delay.
    for (const age of [1_000, 3_000, 1_800_000]) expect(Math.round(backstopAgeMs(age) * 0.9 - age * 1.1)).toBeGreaterThanOrEqual(age / 4);
  });
});
