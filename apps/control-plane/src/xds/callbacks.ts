// Observers attach to streams through callbacks (cf. go-control-plane's
// OnStreamOpen/OnStreamRequest/OnStreamResponse), so metrics, logs and the
// status writer stay out of the protocol code.
import type { XdsTypeUrl } from '@trellis/envoy-types';
import type { ProxyIdentity, XdsResource } from '../resource';

export type XdsProtocol = 'sotw' | 'delta';

/** Why a stream was refused before it started: a bounded set (a metric label). */
export type StreamRejection = 'invalid_argument' | 'unauthenticated' | 'resource_exhausted' | 'deadline_exceeded' | 'internal';

export interface StreamInfo {
  readonly streamId: number;
  readonly nodeId: string;
  readonly identity: ProxyIdentity;
  readonly protocol: XdsProtocol;
  readonly connectedAt: Date;
}

export interface SentResponse {
  typeUrl: XdsTypeUrl;
  version: string;
  nonce: string;
  resources: number;
  /** The resources themselves (shared, never copied), for observers that inspect what went out. */
  sent: readonly XdsResource[];
  /** Encoded size of the resources in this response. */
  bytes: number;
  meshRevision: string;
}

export interface XdsCallbacks {
  onStreamOpen?(stream: StreamInfo): void;
  onStreamClosed?(stream: StreamInfo): void;
  /** A stream refused before it started: bad first request or credentials. */
  onStreamRejected?(code: StreamRejection, reason: string): void;
  onResponse?(stream: StreamInfo, response: SentResponse): void;
  /** `changedAt`: when the change behind the acknowledged response was first seen (ms since epoch). */
  onAck?(stream: StreamInfo, typeUrl: XdsTypeUrl, version: string, changedAt: number): void;
  /** `meshRevision`: the mesh revision the rejected response was built from (not the one current now). */
  onNack?(stream: StreamInfo, typeUrl: XdsTypeUrl, version: string, error: string, meshRevision: string): void;
  /** A request answering an older nonce: ignored. */
  onStaleRequest?(stream: StreamInfo, typeUrl: XdsTypeUrl): void;
}

/** Calls every observer; one throwing does not stop the others or the stream. */
export function composeCallbacks(...all: XdsCallbacks[]): Required<XdsCallbacks> {
  const fan =
    <K extends keyof XdsCallbacks>(key: K) =>
    (...args: Parameters<Required<XdsCallbacks>[K]>): void => {
      for (const callbacks of all) {
        const fn = callbacks[key] as ((...a: unknown[]) => void) | undefined;
        try {
          fn?.apply(callbacks, args);
        } catch {
          // Observers must never break a stream.
        }
      }
    };
  return {
    onStreamOpen: fan('onStreamOpen'),
    onStreamClosed: fan('onStreamClosed'),
    onStreamRejected: fan('onStreamRejected'),
    onResponse: fan('onResponse'),
    onAck: fan('onAck'),
    onNack: fan('onNack'),
    onStaleRequest: fan('onStaleRequest'),
  };
}
