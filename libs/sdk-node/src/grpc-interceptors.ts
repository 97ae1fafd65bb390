// grpc-js interceptors that give proxyless services the guarantees a sidecar gives:
// outbound calls carry an A→B mesh token; inbound calls are refused without a valid one.
import {
  InterceptingCall,
  Metadata,
  ServerInterceptingCall,
  status,
  type Interceptor,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import type { MeshTokenClient } from './token-client';
import { MeshTokenRejected, type MeshTokenVerifier, type VerifiedCaller } from './token-verifier';

/** Metadata key under which the server interceptor hands the verified caller to handlers (the sidecar's CALLER_HEADER). */
export const CALLER_METADATA_KEY = 'x-trellis-caller';
export const CALLER_KEY_ID_METADATA_KEY = 'x-trellis-caller-kid';

/** Client interceptor: attaches `authorization: Bearer <A→B token>` to every call to `audience`. */
export function meshTokenInterceptor(tokens: MeshTokenClient, audience: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        // Fail closed: no token, no call. The caller sees PERMISSION_DENIED with the reason.
        const refuse = (err: unknown) =>
          listener.onReceiveStatus({
            code: status.PERMISSION_DENIED,
            details: err instanceof Error ? err.message : 'no mesh token',
            metadata: new Metadata(),
          });
        // A token grpc-js cannot send (a control character) is refused here too, never thrown.
        tokens
          .getToken(audience)
          .then((token) => {
            metadata.set('authorization', `Bearer ${token}`);
            next(metadata, listener);
          })
          .catch(refuse);
      },
    });
}

/**
 * The standard gRPC health service answers without a token: its callers are the
 * instance's own agent and the kubelet's gRPC probes, and it tells nothing but
 * SERVING or NOT_SERVING (as a sidecar's inbound health check path would).
 */
const UNAUTHENTICATED_PREFIX = '/grpc.health.v1.Health/';

/**
 * Server interceptor: verifies the caller's mesh token before the handler runs.
 * Messages that arrive while the token is being checked are held, then delivered
 * or dropped; a rejected call ends with UNAUTHENTICATED and the reason. Nothing that
 * goes wrong in here reaches the process as an unhandled rejection: an unexpected
 * error ends the call with INTERNAL instead (a crash would take every call with it).
 */
export function meshServerInterceptor(verifier: MeshTokenVerifier, onRejected?: (reason: string) => void): ServerInterceptor {
  return (method, call: ServerInterceptingCallInterface) => {
    if (method.path.startsWith(UNAUTHENTICATED_PREFIX)) return new ServerInterceptingCall(call);
    let verified: Promise<VerifiedCaller | undefined> = Promise.resolve(undefined);
    const end = (code: status, details: string) => {
      try {
        call.sendStatus({ code, details });
      } catch {
        // The call is already over (cancelled by the client): nothing left to tell it.
      }
    };
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, mdNext) {
            verified = admit(verifier, metadata)
              .then(
                (caller) => {
                  mdNext(metadata);
                  return caller;
                },
                (err: unknown) => {
                  const reason = err instanceof MeshTokenRejected ? err.reason : 'token check failed';
                  onRejected?.(reason);
                  end(status.UNAUTHENTICATED, reason);
                  return undefined;
                },
              )
              .catch(() => {
                end(status.INTERNAL, 'mesh token interceptor failed');
                return undefined;
              });
          },
          onReceiveMessage(message, msgNext) {
            void verified.then((caller) => caller && msgNext(message)).catch(() => end(status.INTERNAL, 'mesh token interceptor failed'));
          },
          onReceiveHalfClose(halfCloseNext) {
            void verified.then((caller) => caller && halfCloseNext()).catch(() => end(status.INTERNAL, 'mesh token interceptor failed'));
          },
        });
      },
    });
  };
}

/**
 * Verifies the call's token and hands the verified caller to the handler in the
 * metadata; rejects (never throws synchronously) on any failure, including a caller
 * that metadata cannot carry.
 */
async function admit(verifier: MeshTokenVerifier, metadata: Metadata): Promise<VerifiedCaller> {
  const header = metadata.get('authorization')[0];
  // Nothing the caller sent may claim an identity: only the verifier sets these.
  metadata.remove(CALLER_METADATA_KEY);
  metadata.remove(CALLER_KEY_ID_METADATA_KEY);
  const caller = await verifier.verify(typeof header === 'string' ? header : undefined);
  try {
    metadata.set(CALLER_METADATA_KEY, caller.caller);
    if (caller.keyId) metadata.set(CALLER_KEY_ID_METADATA_KEY, caller.keyId);
  } catch {
    throw new MeshTokenRejected('the token names a caller or key id that is not a valid header value', 'invalid-claims');
  }
  return caller;
}
