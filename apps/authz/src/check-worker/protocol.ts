// The messages between authz's main thread and its Check worker (check-worker.ts,
// ../check.worker.ts). Everything is structured-cloned: plain data only, no
// functions or class instances. The main thread owns etcd, Redis, the signing keys,
// the CA and the Access certs; the worker owns the ext_authz gRPC port and answers a
// cache hit or a policy denial alone. What it cannot answer it asks the main thread
// for (WorkerCall), with the same results a Check on the main thread would get.
import type { ServiceRecord } from '@trellis/mesh-schema';
import type { GrpcConnectionLimits, GrpcTlsLimits, TlsMaterial } from '@trellis/runtime/grpc';
import type { TokenVerification } from '@trellis/mesh-contracts';
import type { AccessApplication, AccessVerification } from '../edge/cloudflare-access';
import type { CachedToken } from '../tokens/token-issuer';

/** What the worker is started with (workerData). */
export interface CheckWorkerSettings {
  host: string;
  /** 0 on the first start; a restarted worker binds the port its predecessor had. */
  port: number;
  logLevel: string;
  allowInsecureCallers: boolean;
  requireClientCertificate: boolean;
  trustDomain: string;
  /** authz's certificate and client roots; undefined: plaintext (local development). Later changes arrive as `tls`. */
  tls: TlsMaterial | undefined;
  /** How long the worker waits for the main thread's answer before the Check is denied (503). */
  callTimeoutMs: number;
  /** With TLS: the gRPC port's handshake and preface deadlines and its cap on pending connections. */
  tlsLimits: GrpcTlsLimits;
  /** The gRPC port's idle and age limits (gRFC A9). */
  connectionLimits: GrpcConnectionLimits;
}

/**
 * The registry as a Check reads it: services by name. `reset`: the whole set (first
 * snapshot, compaction recovery, a restarted worker); otherwise only the named
 * services, null for a deleted one.
 */
export interface RegistryMessage {
  type: 'registry';
  ready: boolean;
  reset: boolean;
  services: Array<[name: string, record: ServiceRecord | null]>;
}

/** Which key signs now and the issuer tokens carry: a cached token is handed out only for these. */
export interface SignerMessage {
  type: 'signer';
  kid: string | undefined;
  issuer: string;
}

export type MainToWorker =
  | RegistryMessage
  | SignerMessage
  | { type: 'ready'; ready: boolean }
  | { type: 'tls'; material: TlsMaterial }
  | { type: 'metrics'; id: number }
  | { type: 'reply'; id: number; reply: CallReply }
  | { type: 'stop'; drainMs: number };

export type WorkerToMain =
  | { type: 'serving'; port: number }
  | { type: 'metrics'; id: number; metrics: unknown[] }
  | { type: 'call'; id: number; call: WorkerCall }
  | { type: 'stopped' };

/** What the worker asks the main thread for. */
export type WorkerCall =
  | { kind: 'token'; source: string; destination: string }
  | { kind: 'verify'; token: string | undefined; audience: string }
  | { kind: 'access'; token: string | undefined; app: AccessApplication };

export type CallReply =
  | { ok: true; token: CachedToken }
  | { ok: true; verification: TokenVerification }
  | { ok: true; access: AccessVerification }
  /** `no-signing-key`: nothing may sign (a 503 no-signing-key, as on the main thread); `failed`: anything else. */
  | { ok: false; error: 'no-signing-key' | 'failed'; message: string };
