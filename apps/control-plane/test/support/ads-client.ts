// A raw ADS client over @grpc/grpc-js for protocol tests: send requests by hand,
// read responses in order, assert on silence.
import type { status as GrpcStatus } from '@grpc/grpc-js';
import { credentials, Metadata, type ChannelCredentials, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { AggregatedDiscoveryServiceClient } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { Node } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { envoyBuildNodeFields } from '@trellis/testing';
import {
  DeltaDiscoveryRequest,
  DiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryResponse,
} from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';

type Protocol = 'sotw' | 'delta';
type Res<P extends Protocol> = P extends 'sotw' ? DiscoveryResponse : DeltaDiscoveryResponse;
type Req<P extends Protocol> = P extends 'sotw' ? DiscoveryRequest : DeltaDiscoveryRequest;
type PartialReq<P extends Protocol> = P extends 'sotw'
  ? Parameters<typeof DiscoveryRequest.fromPartial>[0]
  : Parameters<typeof DeltaDiscoveryRequest.fromPartial>[0];

export function testNode(service: string, id = `${service}-1`, userAgentName = 'envoy'): Node {
  return Node.fromPartial({ id, cluster: service, userAgentName });
}

/**
 * A node as an Envoy sends it on a stream's first request: besides id, cluster and metadata, what every Envoy of a
 * build adds (envoyBuildNodeFields: locality, build version, `extensions` extensions, client features; ~50 KB at 450).
 */
export function envoyNode(
  service: string,
  { id = `${service}-1`, extensions = 450, metadata = {} as { [key: string]: unknown } } = {},
): Node {
  return Node.fromPartial({ ...envoyBuildNodeFields(extensions), id, cluster: service, userAgentName: 'envoy', metadata });
}

export class AdsTestClient<P extends Protocol> {
  private readonly responses: Res<P>[] = [];
  // Each wait holds its deadline timer so that whatever settles it (a response, the stream's end, close()) also
  // clears the timer: a 30 s timer left behind keeps jest from exiting after the run.
  private waiters: Wait<Res<P>>[] = [];
  private ended: ServiceError | undefined;
  private endWaiters: Wait<ServiceError>[] = [];

  private constructor(
    private readonly client: AggregatedDiscoveryServiceClient,
    private readonly call: ClientDuplexStream<Req<P>, Res<P>>,
    private readonly protocol: P,
  ) {
    call.on('data', (response: Res<P>) => {
      const waiter = this.waiters.shift();
      if (waiter) {
        clearTimeout(waiter.timer);
        waiter.resolve(response);
      } else this.responses.push(response);
    });
    call.on('error', (err: ServiceError) => {
      this.ended = err;
      for (const w of this.endWaiters.splice(0)) {
        clearTimeout(w.timer);
        w.resolve(err);
      }
      // No response comes after the stream's end: a pending next() fails now rather than at its deadline.
      for (const w of this.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(streamEnded(err));
      }
    });
  }

  static open<P extends Protocol>(
    address: string,
    protocol: P,
    metadata = new Metadata(),
    channel: ChannelCredentials = credentials.createInsecure(),
  ): AdsTestClient<P> {
    // Its own connection, as each proxy has: the server caps streams per connection. Over TLS it names the
    // server localhost, which createTestPki's server certificate covers: left to itself grpc-js would send
    // the address's IP as the TLS server name, which Node deprecates (DEP0123). Plaintext ignores it.
    const client = new AggregatedDiscoveryServiceClient(address, channel, {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.ssl_target_name_override': 'localhost',
    });
    const call = (protocol === 'sotw'
      ? client.streamAggregatedResources(metadata)
      : client.deltaAggregatedResources(metadata)) as unknown as ClientDuplexStream<Req<P>, Res<P>>;
    return new AdsTestClient(client, call, protocol);
  }

  send(request: PartialReq<P>): void {
    const full =
      this.protocol === 'sotw'
        ? DiscoveryRequest.fromPartial(request as PartialReq<'sotw'>)
        : DeltaDiscoveryRequest.fromPartial(request as PartialReq<'delta'>);
    this.call.write(full as Req<P>);
  }

  /** SotW ACK: the response's own version and nonce. */
  ack(this: AdsTestClient<'sotw'>, typeUrl: string, response: DiscoveryResponse): void {
    this.send({ typeUrl, versionInfo: response.versionInfo, responseNonce: response.nonce });
  }

  /** SotW NACK of `response`, as Envoy sends it: the version it keeps, the nonce rejected, INVALID_ARGUMENT. */
  nack(this: AdsTestClient<'sotw'>, typeUrl: string, response: DiscoveryResponse, keptVersion: string, message: string): void {
    this.send({ typeUrl, versionInfo: keptVersion, responseNonce: response.nonce, errorDetail: { code: 3, message } });
  }

  /** The next response, failing after `timeoutMs` (generous: a loaded machine is slow, not wrong). */
  next(timeoutMs = 30_000): Promise<Res<P>> {
    const queued = this.responses.shift();
    if (queued) return Promise.resolve(queued);
    if (this.ended) return Promise.reject(streamEnded(this.ended));
    return new Promise((resolve, reject) => {
      const waiter: Wait<Res<P>> = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(new Error(`no response within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Resolves with the responses that arrived within `ms` (expected: none). */
  async drain(ms = 300): Promise<Res<P>[]> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.responses.splice(0);
  }

  /** The status the server ended the stream with. */
  closedWith(timeoutMs = 30_000): Promise<{ code: GrpcStatus; details: string }> {
    if (this.ended) return Promise.resolve(this.ended);
    return new Promise((resolve, reject) => {
      const waiter: Wait<ServiceError> = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.endWaiters = this.endWaiters.filter((w) => w !== waiter);
          reject(new Error(`stream still open after ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.endWaiters.push(waiter);
    });
  }

  /**
   * Cancels the stream. A wait still pending (the loser of a race between next() and closedWith()) is dropped
   * unsettled, its timer cleared: the test has moved on, and a rejection nobody awaits would fail the suite.
   */
  close(): void {
    for (const w of [...this.waiters.splice(0), ...this.endWaiters.splice(0)]) clearTimeout(w.timer);
    this.call.cancel();
    this.client.close();
  }
}

interface Wait<T> {
  resolve(value: T): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

function streamEnded(status: ServiceError): Error {
  return new Error(`stream ended (${status.code} ${status.details}) before a response`);
}
