import { connect, type ClientHttp2Session, type SecureClientSessionOptions } from 'node:http2';

/** A GOAWAY frame as the client received it: its error code (0 = NO_ERROR) and debug data (e.g. `max_age`). */
export interface ReceivedGoaway {
  code: number;
  data: string;
}

/**
 * A raw HTTP/2 client session to `url` (`http://` or `https://` with `options`' TLS material), resolved
 * once it is through its preface, recording every GOAWAY the server sends: a test's own eyes on what a
 * server does to a connection that opens no stream. The caller destroys it.
 */
export async function openHttp2Session(
  url: string,
  options: SecureClientSessionOptions = {},
): Promise<{ session: ClientHttp2Session; goaways: ReceivedGoaway[] }> {
  const session = connect(url, options);
  const goaways: ReceivedGoaway[] = [];
  session.on('goaway', (code: number, _lastStreamId: number, data?: Buffer) => goaways.push({ code, data: data?.toString() ?? '' }));
  session.on('error', () => undefined);
  try {
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', reject);
    });
  } catch (error) {
    session.destroy();
    throw error;
  }
  return { session, goaways };
}
