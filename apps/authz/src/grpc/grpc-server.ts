// The gRPC side: envoy.service.auth.v3.Authorization and the standard gRPC
// health service (for Kubernetes gRPC probes and Envoy health checks), which
// follows readiness. With TLS material the port speaks mTLS: client
// certificates are verified against the trust bundle by the TLS layer (required
// unless insecure callers are allowed), and each Check is decided knowing the
// identity its certificate proves.
//
// Request ids: a Check finds its own, from the request it decides, and only when
// it logs (check/request-id.ts); every other call (the health service) gets the
// runtime's request-id interceptor: id from metadata or generated, echoed, logged.
import type { Http2Session } from 'node:http2';
import {
  experimental,
  Server,
  ServerCredentials,
  type sendUnaryData,
  type ServerInterceptingCall,
  type ServerInterceptor,
  type ServerUnaryCall,
} from '@grpc/grpc-js';
import { AuthorizationService, type CheckResponse } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { identityOfPeerCertificate, type PeerIdentity } from '@trellis/pki';
import type { Health, Logger, TlsRefusal } from '@trellis/runtime';
import {
  bindGrpcServer,
  grpcConnectionOptions,
  requestIdInterceptor,
  serveGrpcHealth,
  type GrpcConnectionLimits,
  type GrpcTlsLimits,
} from '@trellis/runtime/grpc';
import { decodeCheckAttributes, type CheckAttributes } from '../check/check-attributes';
import type { CheckService } from '../check/check-service';
import { countOpenStreamsByRegistry } from './idle-limit';
import { keepStreamsByIdReporting, type StreamsById, type StreamsKeptIn } from './session-streams';

export const AUTHORIZATION_SERVICE_NAME = 'envoy.service.auth.v3.Authorization';
const CHECK_PATH = AuthorizationService.check.path;

/**
 * The generated service definition with the wire handled by CheckService: requests
 * are read only as far as a Check needs (decodeCheckAttributes, which never throws,
 * so a bad request is a denial, not a failed RPC) and responses arrive encoded.
 */
const AUTHORIZATION_SERVICE_ON_THE_WIRE = {
  check: {
    ...AuthorizationService.check,
    requestDeserialize: (bytes: Buffer): CheckAttributes => decodeCheckAttributes(bytes),
    responseSerialize: (value: Buffer | CheckResponse): Buffer =>
      Buffer.isBuffer(value) ? value : AuthorizationService.check.responseSerialize(value),
  },
} as const;

export const GRPC_SERVER_OPTIONS = {
  // Envoy holds long-lived connections; keep them alive through idle NATs and notice dead peers.
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.max_receive_message_length': 1024 * 1024,
  // Channelz bookkeeping costs ~8% of a cache-hit Check and nothing here serves channelz.
  'grpc.enable_channelz': 0,
} as const;

export interface AuthzGrpcServer {
  server: Server;
  port: number;
}

export interface GrpcTransport {
  /** authz's certificate and client roots (ServingTls; in the Check worker, what it is handed); undefined: plaintext (local development only). */
  tls: experimental.CertificateProvider | undefined;
  /** Refuse a TLS handshake without a valid client certificate. */
  requireClientCertificate: boolean;
  /** The mesh's trust domain, in which a client certificate names a service. */
  trustDomain: () => string;
  /** With TLS: what a connection may cost before it is through its handshake and HTTP/2 preface (default: the runtime's). */
  tlsLimits?: GrpcTlsLimits;
  /** Idle and age limits of every connection (gRFC A9); absent: none. */
  connectionLimits?: GrpcConnectionLimits;
  /** Each connection the TLS guard closes (a metric). */
  onTlsRefused?: (reason: TlsRefusal) => void;
  /** Each connection's first Check: where its streams are kept from then on (session-streams.ts; a metric). */
  onStreamsKept?: (where: StreamsKeptIn) => void;
}

/**
 * The runtime's request-id interceptor for every method but Check, which it would slow down (an
 * intercepting call per Check, a log line per call) and which reads its id where Envoy puts it.
 */
export function requestIdsExceptCheck(logger: Logger): ServerInterceptor {
  const interceptor = requestIdInterceptor(logger);
  // A Check is handed straight through: grpc-js chains interceptors by reduce, so returning the call it
  // was given adds nothing to the call (the type asks for a ServerInterceptingCall, the chain needs only the interface).
  return (method, call) => (method.path === CHECK_PATH ? (call as ServerInterceptingCall) : interceptor(method, call));
}

/** The Authorization service and the gRPC health service (following `health`), bound to `host:port`. */
export async function startGrpcServer(
  checks: CheckService,
  health: Health,
  host: string,
  port: number,
  transport: GrpcTransport,
  logger: Logger,
): Promise<AuthzGrpcServer> {
  const server = new Server({
    ...GRPC_SERVER_OPTIONS,
    ...grpcConnectionOptions(transport.connectionLimits ?? {}),
    interceptors: [requestIdsExceptCheck(logger)],
  });

  const keepStreams = keepStreamsByIdReporting(logger, transport.onStreamsKept ?? (() => undefined));
  server.addService(AUTHORIZATION_SERVICE_ON_THE_WIRE, {
    check: (call: ServerUnaryCall<CheckAttributes, Buffer>, callback: sendUnaryData<Buffer>) => {
      // check() never rejects: every failure is already a denial.
      const response = checks.check(call.request, peerIdentity(server, call, transport.trustDomain, keepStreams), call.metadata);
      if (Buffer.isBuffer(response)) callback(null, response);
      else void response.then((bytes) => callback(null, bytes));
    },
  });
  serveGrpcHealth(server, health, [AUTHORIZATION_SERVICE_NAME]);
  const credentials = transport.tls
    ? // One provider for both roles, so grpc-js's argument order cannot mix them up.
      experimental.createCertificateProviderServerCredentials(transport.tls, transport.tls, transport.requireClientCertificate)
    : ServerCredentials.createInsecure();
  return {
    server,
    port: await bindGrpcServer(server, host, port, credentials, {
      tlsLimits: transport.tlsLimits,
      onTlsRefused: transport.onTlsRefused,
      listenBacklog: transport.connectionLimits?.listenBacklog,
    }),
  };
}

/**
 * The identity of the call's verified client certificate; undefined without one (grpc-js reports only
 * verified peers). Reading the certificate costs ~40 µs — as much as the rest of a cache-hit Check — and
 * a connection's certificate never changes, so the answer is kept per HTTP/2 session; the first Check
 * on a session also gives it a streams registry that does not fill the old generation (session-streams.ts),
 * which from then on also counts its open streams for the idle limit (idle-limit.ts).
 */
function peerIdentity(
  server: Server,
  call: ServerUnaryCall<unknown, unknown>,
  trustDomain: () => string,
  keepStreams: (session: Http2Session) => StreamsById<unknown> | undefined,
): PeerIdentity | undefined {
  const domain = trustDomain();
  const session = sessionOfCall(call);
  const cached = session && identitiesBySession.get(session);
  if (cached && cached.trustDomain === domain) return cached.identity;
  // The connection's first Check: its streams are kept by id from now on (session-streams.ts says why).
  const streams = session && !cached ? keepStreams(session) : undefined;
  if (session && streams) countOpenStreamsByRegistry(server, session, streams);
  const certificate = call.getAuthContext().sslPeerCertificate;
  const identity = certificate ? identityOfPeerCertificate(certificate, domain) : undefined;
  if (session) identitiesBySession.set(session, { trustDomain: domain, identity });
  return identity;
}

const identitiesBySession = new WeakMap<object, { trustDomain: string; identity: PeerIdentity | undefined }>();

/**
 * The HTTP/2 session (the connection) a unary call rides on. grpc-js has no public
 * accessor, so this reads where 1.14 keeps it (handler call → its intercepting call →
 * the http2 stream → session); undefined when that changes, and every Check then
 * reads the certificate itself (grpc-server.test.ts fails first).
 */
export function sessionOfCall(call: ServerUnaryCall<unknown, unknown>): Http2Session | undefined {
  const session = (call as unknown as { call?: { stream?: { session?: Http2Session } } }).call?.stream?.session;
  return typeof session === 'object' && session !== null && 'socket' in session ? session : undefined;
}
