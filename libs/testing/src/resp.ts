// Just enough of the Redis protocol (RESP2) for the harness to claim, flush
// and probe a database without pulling a Redis client into a shared library.
import { connect } from 'node:net';

export type RespReply = string | number | null | RespReply[];

export class RespError extends Error {}

/** Encodes a command as a RESP array of bulk strings. */
export function encodeCommand(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/** Parses one reply from the start of `buf`; undefined when more bytes are needed. */
export function parseReply(buf: string, start = 0): { reply: RespReply | RespError; end: number } | undefined {
  const lineEnd = buf.indexOf('\r\n', start);
  if (lineEnd < 0) return undefined;
  const type = buf[start];
  const line = buf.slice(start + 1, lineEnd);
  switch (type) {
    case '+':
      return { reply: line, end: lineEnd + 2 };
    case '-':
      return { reply: new RespError(line), end: lineEnd + 2 };
    case ':':
      return { reply: Number(line), end: lineEnd + 2 };
    case '$': {
      const len = Number(line);
      if (len < 0) return { reply: null, end: lineEnd + 2 };
      const end = lineEnd + 2 + len;
      if (buf.length < end + 2) return undefined;
      return { reply: buf.slice(lineEnd + 2, end), end: end + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { reply: null, end: lineEnd + 2 };
      const items: RespReply[] = [];
      let pos = lineEnd + 2;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, pos);
        if (!item) return undefined;
        if (item.reply instanceof RespError) return { reply: item.reply, end: item.end };
        items.push(item.reply);
        pos = item.end;
      }
      return { reply: items, end: pos };
    }
    default:
      throw new RespError(`unexpected RESP reply type ${JSON.stringify(type)}`);
  }
}

/** Runs commands in order on one connection (AUTH from the URL first); resolves with every reply. */
export async function redisCommands(url: string, commands: string[][], timeoutMs = 2_000): Promise<RespReply[]> {
  const parsed = new URL(url);
  const auth: string[][] = parsed.password
    ? [
        parsed.username
          ? ['AUTH', decodeURIComponent(parsed.username), decodeURIComponent(parsed.password)]
          : ['AUTH', decodeURIComponent(parsed.password)],
      ]
    : [];
  const all = [...auth, ...commands];
  return new Promise((resolve, reject) => {
    const socket = connect({ host: parsed.hostname, port: Number(parsed.port || 6379) });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`redis at ${parsed.host}: no reply within ${timeoutMs} ms`)));
    socket.setEncoding('utf8');
    let buf = '';
    const replies: RespReply[] = [];
    socket.on('connect', () => socket.write(all.map(encodeCommand).join('')));
    socket.on('data', (chunk: string) => {
      buf += chunk;
      for (;;) {
        const next = parseReply(buf);
        if (!next) return;
        buf = buf.slice(next.end);
        if (next.reply instanceof RespError) {
          socket.destroy();
          reject(new Error(`redis at ${parsed.host}: ${next.reply.message}`));
          return;
        }
        replies.push(next.reply);
        if (replies.length === all.length) {
          socket.end();
          resolve(replies.slice(auth.length));
          return;
        }
      }
    });
    socket.on('error', reject);
  });
}
