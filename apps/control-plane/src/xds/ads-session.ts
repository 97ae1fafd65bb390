// What every ADS stream's session does, SotW or Delta: it holds the proxy's
// current snapshot and, whenever something changes, walks the types in
// make-before-break order (secrets only to authenticated clients, listeners and
// routes only once clusters and endpoints settled); it stops while the
// transport is full and for good once the stream closed. What to send for a
// type is the protocol's business (sotw-session.ts, delta-session.ts).
import { ADS_PUSH_ORDER, TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import type { SentResponse, StreamInfo, XdsCallbacks } from './callbacks';
import { ROUTING_TYPES } from './push-order';
import { PumpScheduler, type PumpGate } from './session-common';
import type { ProxySnapshot } from './snapshot-cache';

export abstract class AdsSession<Response> {
  protected snapshot: ProxySnapshot | undefined;
  private blocked = false;
  private closed = false;
  private nonces = 0;
  private readonly pumps: PumpScheduler;
  /** The stream's start as a number: every response compares it with its snapshot's change (convergenceStart). */
  protected readonly connectedAtMs: number;
  /** Every response's `control_plane`: one object per stream, not one per response (the encoder only reads it). */
  protected readonly controlPlane: { identifier: string };

  constructor(
    protected readonly stream: StreamInfo,
    private readonly send: (response: Response) => boolean,
    protected readonly callbacks: Required<XdsCallbacks>,
    protected readonly controlPlaneId: string,
    /** False for clients admitted without credentials: they never receive secrets. */
    private readonly secretsAllowed: boolean,
    /** Where answers to requests wait while a change is fanned out (SnapshotCache.afterFanOut); pushes never do. */
    gate?: PumpGate,
  ) {
    this.pumps = new PumpScheduler(() => this.pump(), gate);
    this.connectedAtMs = stream.connectedAt.getTime();
    this.controlPlane = { identifier: controlPlaneId };
  }

  setSnapshot(snapshot: ProxySnapshot): void {
    this.snapshot = snapshot;
    this.pump();
  }

  /** The transport has room again after `send` returned false. */
  drained(): void {
    this.blocked = false;
    this.pump();
  }

  close(): void {
    this.closed = true;
    this.pumps.close();
  }

  /** Sends what the client lacks of one type, unless an answer for that type is outstanding. */
  protected abstract pushType(typeUrl: XdsTypeUrl, snapshot: ProxySnapshot): void;

  /**
   * Whether listeners and routes must wait: clusters or endpoints are unanswered,
   * or endpoints of clusters the client just accepted are still to come (then
   * the session calls `pumpAfter` to look again).
   */
  protected abstract clustersInFlight(snapshot: ProxySnapshot): boolean;

  /** After the requests that arrived together are all read. */
  protected pumpSoon(): void {
    this.pumps.soon();
  }

  protected pumpAfter(ms: number): void {
    this.pumps.after(ms);
  }

  protected nextNonce(): string {
    return (++this.nonces).toString(36);
  }

  /** Writes a response and tells observers; a full transport pauses the pump until `drained`. */
  protected transmit(response: Response, sent: SentResponse): void {
    const ok = this.send(response);
    this.callbacks.onResponse(this.stream, sent);
    if (!ok) this.blocked = true;
  }

  private pump(): void {
    const snapshot = this.snapshot;
    if (!snapshot || this.closed) return;
    // Asked once per pump, for listeners and routes alike: it reads only the clusters' and endpoints' state, which
    // pushing listeners does not change.
    let routingWaits: boolean | undefined;
    for (const typeUrl of ADS_PUSH_ORDER) {
      if (this.blocked) return;
      if (typeUrl === TypeUrl.Secret && !this.secretsAllowed) continue;
      if (ROUTING_TYPES.has(typeUrl) && (routingWaits ??= this.clustersInFlight(snapshot))) continue;
      this.pushType(typeUrl, snapshot);
    }
  }
}
