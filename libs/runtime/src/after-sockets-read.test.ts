// afterSocketsRead against a real loopback socket: an answer that arrived while this
// process was busy is read before the timeout is called; a plain timer fires first.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterSocketsRead } from './after-sockets-read';

// An echo server in another process, so that it answers while this one is busy.
const ECHO = `const s = require('node:net').createServer((c) => c.on('data', (d) => c.write(d)));
s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
let echo: ChildProcess;
let client: Socket;
beforeAll(async () => {
  echo = spawn(process.execPath, ['-e', ECHO], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [port] = (await once(echo.stdout!, 'data')) as [Buffer];
  client = connect(Number(port.toString().trim()), '127.0.0.1');
  await once(client, 'connect');
});
afterAll(async () => {
  client?.destroy();
  echo?.kill();
});

/** Sends a ping, then keeps this process busy for `busyMs` (the echo arrives meanwhile); says what happened first. */
async function pingThenBusy(startTimer: (ms: number, onTimeout: () => void) => void, busyMs: number): Promise<string[]> {
  const seen: string[] = [];
  const done = new Promise<void>((resolve) => {
    let pending = 2;
    const mark = (what: string) => {
      seen.push(what);
      if (--pending === 0) resolve();
    };
    client.once('data', () => mark('answer'));
    startTimer(50, () => mark('timeout'));
  });
  client.write('ping');
  const end = Date.now() + busyMs;
  while (Date.now() < end) {
    // busy: the echo is in the socket, unread, and the timer is due
  }
  await done;
  return seen;
}

it('reads an answer that arrived during a busy turn before calling the timeout', async () => {
  expect(await pingThenBusy((ms, fn) => afterSocketsRead(ms, fn), 2_000)).toEqual(['answer', 'timeout']);
});

it('(a plain timer fires first: what it replaces)', async () => {
  expect(await pingThenBusy((ms, fn) => setTimeout(fn, ms), 2_000)).toEqual(['timeout', 'answer']);
});

it('is not called once cancelled, also between its timer and its call', async () => {
  let called = false;
  const cancel = afterSocketsRead(1, () => (called = true));
  // Runs in the same timers phase just after the timer above, before its hops.
  await new Promise<void>((r) => setTimeout(() => (cancel(), r()), 1));
  await new Promise((r) => setTimeout(r, 20));
  expect(called).toBe(false);
});
