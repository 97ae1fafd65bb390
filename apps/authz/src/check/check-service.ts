// The ext_authz Check: reads which way the request goes from the per-route
// context extensions the control plane (or Contour) set — never from headers
// the application could send — and decides. Every path returns a Decision;
// an unexpected error becomes a denial, never a failed RPC.
//
// The request path is built for the cache hit: the wire bytes are read only as
// far as needed (check-attributes.ts), a cached token is found synchronously,
// and its encoded response is reused.
import type { PeerIdentity } from '@trellis/pki';
import type { Logger } from '@trellis/runtime';
import { CheckResponse } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import {
  ACCESS_EMAIL_HEADER,
  ACCESS_SERVICE_TOKEN_HEADER,
  CALLER_HEADER,
  CONTEXT_DESTINATION,
  CONTEXT_DIRECTION,
  CONTEXT_SOURCE,
  DNS_LABEL,
  isCallDirection,
  type CallDecision,
} from '@trellis/mesh-contracts';
import { accessTokenFrom, type CloudflareAccessVerifier } from '../edge/cloudflare-access';
import { checkRequestPath } from '../edge/request-path';
import type { AuthzMetrics, Direction } from '../metrics';
import type { MintedToken } from '../tokens/mint';
import { NoSigningKeyError, type MeshTokenIssuer } from '../tokens/token-issuer';
import type { MeshTokenVerifier } from '../tokens/token-verifier';
import { authorizeCaller } from './caller-identity';
import type { CheckAttributes } from './check-attributes';
import { allow, forbid, misconfigured, toCheckResponse, unauthenticated, unavailable, type Decision } from './decision';
import { DenialLog } from './denial-log';
import type { MeshPolicy } from './mesh-policy';
import { checkRequestId, type CallMetadata } from './request-id';

export class CheckService {
  // Decisions that recur Check after Check — the allow for each cached token, the refusal of each
  // undeclared pair — are built once and kept with their wire encoding: a repeat costs lookups, no encode.
  private readonly encoded = new WeakMap<Decision, Buffer>();
  private readonly tokenDecisions = new WeakMap<MintedToken, Decision>();
  // source → destination → the policy's refusal. Bounded: a hostile caller can name any pair.
  private readonly policyDenials = new Map<string, Map<string, Decision>>();
  private policyDenialCount = 0;
  // Wire encodings of other denials, by everything they say: a caller refused again and again
  // (a misconfigured or hostile client) costs a lookup, not an encode. Bounded: the
  // message names the services, so distinct denials are as many as distinct pairs.
  private readonly encodedDenials = new Map<string, Buffer>();
  private readonly denials: DenialLog;

  constructor(
    private readonly policy: MeshPolicy,
    private readonly tokens: CheckTokens,
    private readonly verifier: InboundVerifier,
    private readonly access: AccessVerifier,
    private readonly metrics: AuthzMetrics,
    private readonly logger: Logger,
    private readonly options: CheckServiceOptions = { allowInsecureCallers: false },
  ) {
    this.denials = new DenialLog(logger);
  }

  /**
   * The encoded CheckResponse; synchronous when the answer is at hand (a cached token, a denial). Never rejects.
   * `peer` is the identity of the connection's verified client certificate, undefined without one; `metadata`
   * the Check call's own, a last place to find the request id in (request-id.ts).
   */
  check(attributes: CheckAttributes, peer: PeerIdentity | undefined, metadata?: CallMetadata): Buffer | Promise<Buffer> {
    const started = performance.now();
    const direction = directionOf(attributes.contextExtensions[CONTEXT_DIRECTION]);
    let decision: Decision | Promise<Decision>;
    try {
      decision = this.decide(direction, attributes, peer);
    } catch (err) {
      decision = this.internalError(err, direction, attributes, metadata);
    }
    if (decision instanceof Promise) {
      return decision
        .catch((err: unknown) => this.internalError(err, direction, attributes, metadata))
        .then((d) => this.respond(d, direction, attributes, peer, metadata, started));
    }
    return this.respond(decision, direction, attributes, peer, metadata, started);
  }

  private respond(
    decision: Decision,
    direction: Direction,
    attributes: CheckAttributes,
    peer: PeerIdentity | undefined,
    metadata: CallMetadata | undefined,
    started: number,
  ): Buffer {
    this.metrics.countCheck(direction, decision.allow ? 'ok' : 'denied', decision.reason);
    // A log line, and the request id in it, is built only once it is known the line is written.
    if (!decision.allow) this.denials.denied(decision.reason, () => logFields(direction, attributes, peer, metadata));
    else if (this.logger.isLevelEnabled('debug')) this.logger.debug(logFields(direction, attributes, peer, metadata), 'request allowed');
    const bytes = this.encode(decision);
    this.metrics.observeCheckDuration(direction, (performance.now() - started) / 1000);
    return bytes;
  }

  private encode(decision: Decision): Buffer {
    const kept = this.encoded.get(decision);
    if (kept) return kept;
    if (decision.allow) return encodeResponse(decision);
    const key = `${decision.grpcCode} ${decision.httpStatus} ${decision.reason} ${decision.message}`;
    let denial = this.encodedDenials.get(key);
    if (!denial) {
      denial = encodeResponse(decision);
      if (this.encodedDenials.size >= MAX_ENCODED_DENIALS) this.encodedDenials.delete(this.encodedDenials.keys().next().value!);
      this.encodedDenials.set(key, denial);
    }
    return denial;
  }

  /** `decision`, encoded now and kept for as long as the caller keeps the decision object. */
  private kept(decision: Decision): Decision {
    this.encoded.set(decision, encodeResponse(decision));
    return decision;
  }

  /** The allow that adds `minted` upstream: one decision per cached token. */
  private withToken(minted: MintedToken): Decision {
    return this.tokenDecisions.get(minted) ?? this.keepTokenDecision(minted);
  }

  private keepTokenDecision(minted: MintedToken): Decision {
    const decision = this.kept(allow({ authorization: `Bearer ${minted.token}` }));
    this.tokenDecisions.set(minted, decision);
    return decision;
  }

  /** The registry's refusal of `source` → `destination`, one decision per pair and reason. */
  private policyDenial(source: string, destination: string, reason: CallRefusal): Decision {
    let byDestination = this.policyDenials.get(source);
    const known = byDestination?.get(destination);
    if (known && known.reason === reason) return known;
    if (this.policyDenialCount >= MAX_ENCODED_DENIALS) {
      this.policyDenials.clear();
      this.policyDenialCount = 0;
      byDestination = undefined;
    }
    if (!byDestination) this.policyDenials.set(source, (byDestination = new Map()));
    if (!byDestination.has(destination)) this.policyDenialCount += 1;
    const decision = this.kept(forbid(reason, `${source} has not declared a dependency on ${destination}`));
    byDestination.set(destination, decision);
    return decision;
  }

  private internalError(err: unknown, direction: Direction, attributes: CheckAttributes, metadata: CallMetadata | undefined): Decision {
    this.logger.error({ err, requestId: checkRequestId(attributes, metadata), direction }, 'check failed unexpectedly; denying');
    return unavailable('internal-error', 'authz could not decide');
  }

  private decide(direction: Direction, attributes: CheckAttributes, peer: PeerIdentity | undefined): Decision | Promise<Decision> {
    if (attributes.malformed) return misconfigured('malformed-request', 'the CheckRequest could not be decoded');
    const caller = authorizeCaller(direction, attributes.contextExtensions, peer, this.options.allowInsecureCallers);
    if (!caller.ok) {
      this.metrics.callerIdentityDenials.inc({ direction, reason: caller.reason });
      return caller.decision;
    }
    // Fail closed until the first registry snapshot is loaded.
    if (!this.policy.ready) return unavailable('not-ready', 'the registry snapshot is not loaded yet');
    const context = caller.contextExtensions;
    switch (direction) {
      case 'outbound':
        return this.outbound(context[CONTEXT_SOURCE], context[CONTEXT_DESTINATION]);
      case 'inbound':
        return this.inbound(context[CONTEXT_DESTINATION], attributes.http()?.headers ?? {});
      case 'edge':
        return this.edge(attributes, context[CONTEXT_DESTINATION]);
      default:
        return misconfigured('missing-context', `the route does not set a valid ${CONTEXT_DIRECTION} context extension`);
    }
  }

  /** At A's sidecar: may A call B? If so, the A→B token to add upstream. */
  private outbound(source: string | undefined, destination: string | undefined): Decision | Promise<Decision> {
    if (!isServiceName(source) || !isServiceName(destination)) {
      return misconfigured('missing-context', `outbound checks need ${CONTEXT_SOURCE} and ${CONTEXT_DESTINATION} service names`);
    }
    const call = this.policy.allowsCall(source, destination);
    if (!call.allowed) return this.policyDenial(source, destination, call.reason);
    const cached = this.tokens.cachedToken(source, destination);
    if (cached) return this.withToken(cached);
    return this.tokens.tokenFor(source, destination).then(
      (minted) => this.withToken(minted),
      (err: unknown) => {
        if (err instanceof NoSigningKeyError) return unavailable('no-signing-key', 'no signing key is active');
        throw err;
      },
    );
  }

  /** At B's sidecar, for proxies that validate through ext_authz rather than jwt_authn. */
  private async inbound(destination: string | undefined, headers: Readonly<Record<string, string>>): Promise<Decision> {
    if (!isServiceName(destination)) return misconfigured('missing-context', `inbound checks need a ${CONTEXT_DESTINATION} service name`);
    const result = await this.verifier.verify(bearerToken(headers['authorization']), destination);
    if (!result.valid) return unauthenticated(`token-${result.reason}`, result.detail);
    // A valid token from a caller that has since dropped the dependency is refused too.
    const call = this.policy.allowsCall(result.subject, destination);
    if (!call.allowed) return forbid(call.reason, `${result.subject} has not declared a dependency on ${destination}`);
    return allow({ [CALLER_HEADER]: result.subject });
  }

  /**
   * At the edge: the Cloudflare Access JWT of the destination's ingress. The
   * destination comes from the route (the HTTPProxy's authPolicy.context, or a
   * public service's own sidecar) — the service Contour routes to — never from a
   * guess over host and path, which another team's ingress could win. The path
   * must already be in the form Envoy routes by.
   */
  private async edge(attributes: CheckAttributes, destination: string | undefined): Promise<Decision> {
    const http = attributes.http();
    if (!http) return misconfigured('missing-context', 'edge checks need the HTTP request attributes');
    if (!isServiceName(destination))
      return misconfigured('missing-context', `edge checks need a ${CONTEXT_DESTINATION} service name from the route`);
    const path = checkRequestPath(http.path);
    if (!path.canonical) return forbid('non-canonical-path', `${path.why}; send the normalised path`);
    const match = this.policy.ingressOf(destination);
    if (!match) return forbid('no-ingress', `${destination} has no ingress`);
    const stripIdentity = [ACCESS_EMAIL_HEADER, ACCESS_SERVICE_TOKEN_HEADER];
    const app = match.ingress.cloudflareAccess;
    // An ingress without an Access application is public by declaration.
    if (!app) return allow({}, stripIdentity);
    const result = await this.access.verify(accessTokenFrom(http.headers), app);
    if (!result.valid) {
      if (result.reason === 'unusable-team-domain')
        return misconfigured('access-unusable-team-domain', `the ingress names a Cloudflare Access team domain no URL can be built for`);
      return result.reason === 'certs-unavailable'
        ? unavailable('access-certs-unavailable', `could not fetch the signing keys of ${app.teamDomain}`)
        : unauthenticated(`access-${result.reason}`, 'Cloudflare Access token rejected');
    }
    const { email, serviceTokenId } = result.identity;
    const headers: Record<string, string> = {};
    if (email) headers[ACCESS_EMAIL_HEADER] = email;
    if (serviceTokenId) headers[ACCESS_SERVICE_TOKEN_HEADER] = serviceTokenId;
    return allow(
      headers,
      stripIdentity.filter((name) => !(name in headers)),
    );
  }
}

/**
 * What a Check needs of the token issuer and the verifiers. On the main thread these are the
 * objects themselves; in the Check worker (check-worker/) the worker's token memory and calls to
 * the main thread, which owns Redis, the signing keys and the Access certs.
 */
export type CheckTokens = Pick<MeshTokenIssuer, 'cachedToken' | 'tokenFor'>;
export type InboundVerifier = Pick<MeshTokenVerifier, 'verify'>;
export type AccessVerifier = Pick<CloudflareAccessVerifier, 'verify'>;

export interface CheckServiceOptions {
  /** Local development only: a Check without a client certificate is decided on the route's context extensions alone. */
  allowInsecureCallers: boolean;
}

const MAX_ENCODED_DENIALS = 1_024;

type CallRefusal = Extract<CallDecision, { allowed: false }>['reason'];

function encodeResponse(decision: Decision): Buffer {
  const written = CheckResponse.encode(toCheckResponse(decision)).finish();
  return Buffer.from(written.buffer, written.byteOffset, written.byteLength);
}

function logFields(direction: Direction, attributes: CheckAttributes, peer: PeerIdentity | undefined, metadata: CallMetadata | undefined) {
  const context = attributes.contextExtensions;
  return {
    requestId: checkRequestId(attributes, metadata),
    direction,
    source: context[CONTEXT_SOURCE],
    destination: context[CONTEXT_DESTINATION],
    peer: peerName(peer),
  };
}

function peerName(peer: PeerIdentity | undefined): string | undefined {
  if (!peer) return undefined;
  return peer.kind === 'service' ? peer.service : peer.kind === 'component' ? `trellis/${peer.component}` : 'unknown';
}

function directionOf(value: string | undefined): Direction {
  return isCallDirection(value) ? value : 'unknown';
}

function isServiceName(value: string | undefined): value is string {
  return value !== undefined && DNS_LABEL.test(value);
}

function bearerToken(header: string | undefined): string | undefined {
  const match = header?.match(/^Bearer +([^ ]+)$/i);
  return match?.[1];
}
