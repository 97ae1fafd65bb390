import { encodeCommand, parseReply, RespError } from './resp';

describe('RESP', () => {
  it('encodes commands as arrays of bulk strings, counting bytes not characters', () => {
    expect(encodeCommand(['SET', 'k', 'é'])).toBe('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\né\r\n');
  });

  it.each([
    ['+OK\r\n', 'OK'],
    [':42\r\n', 42],
    ['$5\r\nhello\r\n', 'hello'],
    ['$-1\r\n', null],
    ['*2\r\n+a\r\n:1\r\n', ['a', 1]],
  ])('parses %j', (wire, expected) => {
    expect(parseReply(wire)).toEqual({ reply: expected, end: wire.length });
  });

  it('turns an error reply into a RespError', () => {
    const parsed = parseReply('-ERR unknown command\r\n');
    expect(parsed?.reply).toBeInstanceOf(RespError);
    expect((parsed?.reply as RespError).message).toBe('ERR unknown command');
  });

  it('waits for more bytes when a reply is incomplete', () => {
    expect(parseReply('$5\r\nhel')).toBeUndefined();
    expect(parseReply('*2\r\n+a\r\n')).toBeUndefined();
    expect(parseReply('+OK')).toBeUndefined();
  });
});
