// The idle limit of authz's gRPC port once a connection's open streams are counted by its streams
// registry (idle-limit.ts): a real grpc-js server started by startGrpcServer and a real client. The
// Checks after a connection's first one carry no idle listener of grpc-js's; a Check held open keeps
// the connection however long it takes; once the last one ends the connection is closed after the limit.
import type { Http2Session, ServerHttp2Stream } from 'node:http2';
import { connectivityState, credentials, Server, type ServiceError } from '@grpc/grpc-js';
import { AuthorizationClient, CheckRequest, CheckResponse } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { createLogger, Health } from '@trellis/runtime';
import { stopGrpcServer } from '@trellis/runtime/grpc';
import { CONTEXT_DESTINATION } from '@trellis/mesh-contracts';
import { eventually } from '@trellis/testing';
import type { CheckAttributes } from '../check/check-attributes';
import type { CheckService } from '../check/check-service';
import { startGrpcServer } from './grpc-server';
import { countOpenStreamsByRegistry } from './idle-limit';
import { StreamsById, streamsOf } from './session-streams';

jest.setTimeout(120_000);

const IDLE_MS = 1_000;
/** How long Checks are held open to show the idle limit leaves their connection alone: several idle limits. */
const QUIET_MS = 4 * IDLE_MS;
const WITHIN_MS = 60_000;
const OK = Buffer.from(CheckResponse.encode(CheckResponse.fromPartial({ status: { code: 0 } })).finish());

describe("authz's gRPC port with an idle limit, open streams counted by the registry", () => {
  let started: { server: Server; port: number };
  /** Checks for destination `held` wait here until released. */
  const held: Array<() => void> = [];

  beforeAll(async () => {
    const checks = {
      check: (attributes: CheckAttributes) =>
        attributes.contextExtensions[CONTEXT_DESTINATION] === 'held' ? new Promise<Buffer>((resolve) => held.push(() => resolve(OK))) : OK,
    } as unknown as CheckService;
    started = await startGrpcServer(
      checks,
      new Health(),
      '127.0.0.1',
      0,
      {
        tls: undefined,
        requireClientCertificate: false,
        trustDomain: () => 'trellis.local',
        connectionLimits: { maxConnectionIdleMs: IDLE_MS },
      },
      createLogger('authz', 'warn'),
    );
  });
  afterAll(() => stopGrpcServer(started.server, 1_000));

  /** The server's side of its connections (grpc-js keeps them in a private map per HTTP/2 server; read only). */
  const serverSessions = (): Http2Session[] => {
    const servers = (started.server as unknown as { http2Servers: Map<unknown, { sessions: Set<Http2Session> }> }).http2Servers;
    return [...servers.values()].flatMap((server) => [...server.sessions]);
  };
  const openStreams = (session: Http2Session): ServerHttp2Stream[] => {
    const registry = streamsOf(session);
    const streams: ServerHttp2Stream[] = [];
    if (registry instanceof StreamsById) registry.forEach((stream) => streams.push(stream as ServerHttp2Stream));
    return streams;
  };

  it('adds no listener per Check after the first, keeps a connection with a Check open, and closes it once idle', async () => {
    const client = new AuthorizationClient(`127.0.0.1:${started.port}`, credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
    });
    const check = (destination: string) =>
      new Promise<CheckResponse>((resolve, reject) =>
        client.check(
          CheckRequest.fromPartial({ attributes: { contextExtensions: { [CONTEXT_DESTINATION]: destination } } }),
          (err: ServiceError | null, response?: CheckResponse) => (err ? reject(err) : resolve(response!)),
        ),
      );
    // The connection's first Check (its stream opened before the swap, so grpc-js counted it with a listener), then a second.
    const first = check('held');
    await eventually('the first Check to be held', () => held.length === 1, WITHIN_MS);
    const second = check('held');
    await eventually('the second Check to be held', () => held.length === 2, WITHIN_MS);
    const [session] = serverSessions();
    const [opened, later] = openStreams(session!);
    expect(later!.listenerCount('close')).toBe(opened!.listenerCount('close') - 1);

    // Held open for several idle limits: the connection stays.
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    expect(session!.closed).toBe(false);
    expect(client.getChannel().getConnectivityState(false)).toBe(connectivityState.READY);
    for (const release of held.splice(0)) release();
    await Promise.all([first, second]);
    expect(await check('orders')).toMatchObject({ status: { code: 0 } });

    // No stream open now: the server closes the connection after the idle limit, and the channel notices.
    await eventually('the idle connection to be closed', () => session!.closed || session!.destroyed, WITHIN_MS);
    await eventually(
      'the channel to lose its connection',
      () => client.getChannel().getConnectivityState(false) !== connectivityState.READY,
      WITHIN_MS,
    );
    // A new Check connects again.
    expect(await check('orders')).toMatchObject({ status: { code: 0 } });
    client.close();
  });

  it('changes nothing on a server without an idle limit, or where grpc-js keeps no idle state', () => {
    const session = {} as Http2Session;
    expect(countOpenStreamsByRegistry(new Server(), session, new StreamsById())).toBe(false);
    expect(countOpenStreamsByRegistry({} as Server, session, new StreamsById())).toBe(false);
  });
});
