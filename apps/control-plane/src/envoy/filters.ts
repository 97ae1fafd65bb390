// HTTP filters of the sidecar listeners, and their per-route settings.
import type { CallDirection } from '@trellis/mesh-contracts';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { packAny, typeUrlOf } from '@trellis/envoy-types';
import { MetadataMatcher } from '@trellis/envoy-types/envoy/type/matcher/v3/metadata';
import { ApiVersion } from '@trellis/envoy-types/envoy/config/core/v3/config_source';
import { Policy, Principal, RBAC_Action } from '@trellis/envoy-types/envoy/config/rbac/v3/rbac';
import { ExtAuthz, ExtAuthzPerRoute } from '@trellis/envoy-types/envoy/extensions/filters/http/ext_authz/v3/ext_authz';
import { JwtAuthentication, type JwtRequirement } from '@trellis/envoy-types/envoy/extensions/filters/http/jwt_authn/v3/config';
import { LocalRateLimit } from '@trellis/envoy-types/envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit';
import { RBAC } from '@trellis/envoy-types/envoy/extensions/filters/http/rbac/v3/rbac';
import { RBAC as NetworkRBAC } from '@trellis/envoy-types/envoy/extensions/filters/network/rbac/v3/rbac';
import { Filter } from '@trellis/envoy-types/envoy/config/listener/v3/listener_components';
import { Router } from '@trellis/envoy-types/envoy/extensions/filters/http/router/v3/router';
import { HttpFilter } from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import { FractionalPercent_DenominatorType } from '@trellis/envoy-types/envoy/type/v3/percent';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import type { TrafficPolicy } from '@trellis/mesh-schema';
import type { MeshTokens } from '../model';
import { duration } from './common';
import { probeRouteMatch, type HealthProbe } from './health-probe';
import {
  AUTHZ_CLUSTER_NAME,
  CONTEXT_DESTINATION,
  CONTEXT_DIRECTION,
  CONTEXT_SOURCE,
  FILTER,
  MESH_TOKEN_METADATA_KEY,
  MESH_TOKEN_PROVIDER,
} from './names';

type RateLimit = NonNullable<TrafficPolicy['rateLimit']>;

function httpFilter(name: string, typedConfig: Any, isOptional = false): HttpFilter {
  return HttpFilter.fromPartial({ name, configType: { $case: 'typedConfig', value: typedConfig }, isOptional });
}

// Filters that every listener carries alike are encoded once (encoded messages are never mutated).
let router: HttpFilter | undefined;
const extAuthzFilters = new Map<string, HttpFilter>();

export function routerFilter(): HttpFilter {
  return (router ??= httpFilter(FILTER.router, packAny(Router, Router.fromPartial({}))));
}

/** Matches requests whose mesh token jwt_authn verified (its payload is in dynamic metadata). */
function meshTokenVerified() {
  return {
    filter: FILTER.jwtAuthn,
    path: [{ segment: { $case: 'key' as const, value: MESH_TOKEN_METADATA_KEY } }],
    value: { matchPattern: { $case: 'presentMatch' as const, value: true } },
  };
}

/**
 * ext_authz to authz over gRPC; no answer in time means the request is refused
 * (fail closed). `skipVerifiedMeshCalls`: on a public service's inbound side,
 * only requests without a verified mesh token (edge traffic) are sent to authz.
 */
export function extAuthzFilter(timeoutMs: number, skipVerifiedMeshCalls = false): HttpFilter {
  const key = `${timeoutMs}|${skipVerifiedMeshCalls}`;
  let filter = extAuthzFilters.get(key);
  if (!filter) extAuthzFilters.set(key, (filter = encodeExtAuthzFilter(timeoutMs, skipVerifiedMeshCalls)));
  return filter;
}

function encodeExtAuthzFilter(timeoutMs: number, skipVerifiedMeshCalls: boolean): HttpFilter {
  return httpFilter(
    FILTER.extAuthz,
    packAny(
      ExtAuthz,
      ExtAuthz.fromPartial({
        transportApiVersion: ApiVersion.V3,
        failureModeAllow: false,
        services: {
          $case: 'grpcService',
          value: { targetSpecifier: { $case: 'envoyGrpc', value: { clusterName: AUTHZ_CLUSTER_NAME } }, timeout: duration(timeoutMs) },
        },
        ...(skipVerifiedMeshCalls ? { filterEnabledMetadata: { ...meshTokenVerified(), invert: true } } : {}),
      }),
    ),
  );
}

/**
 * Tells authz who calls whom, per route: the only place authz learns the caller from.
 * `edge` (no source): a request reaching a public service from outside, checked like
 * Contour checks it (host + path → ingress).
 */
export function extAuthzContext(direction: CallDirection, { source, destination }: { source?: string; destination: string }): Any {
  const contextExtensions: Record<string, string> = { [CONTEXT_DIRECTION]: direction, [CONTEXT_DESTINATION]: destination };
  if (source !== undefined) contextExtensions[CONTEXT_SOURCE] = source;
  return packAny(ExtAuthzPerRoute, ExtAuthzPerRoute.fromPartial({ override: { $case: 'checkSettings', value: { contextExtensions } } }));
}

/** The same for every route that turns ext_authz off (every sidecar's `undeclared` route): encoded once. */
let disabled: Any | undefined;
export function extAuthzDisabled(): Any {
  return (disabled ??= packAny(ExtAuthzPerRoute, ExtAuthzPerRoute.fromPartial({ override: { $case: 'disabled', value: true } })));
}

/**
 * Validates mesh tokens (`Authorization: Bearer`) for `audience` against the
 * inlined authz keys; the verified payload goes to dynamic metadata for RBAC.
 * `edgeToo`: a public service also takes edge requests, which carry no mesh
 * token or a token of their own; those pass on unverified to ext_authz's edge
 * check, and RBAC admits them only as edge traffic.
 * `probe`: the service's own health-check request needs no token (first rule wins).
 */
export function jwtAuthnFilter(tokens: MeshTokens, audience: string, edgeToo: boolean, probe?: HealthProbe): HttpFilter {
  const provider: JwtRequirement = { requiresType: { $case: 'providerName', value: MESH_TOKEN_PROVIDER } };
  const requirement: JwtRequirement = edgeToo
    ? {
        requiresType: {
          $case: 'requiresAny',
          value: { requirements: [provider, { requiresType: { $case: 'allowMissingOrFailed', value: {} } }] },
        },
      }
    : provider;
  return httpFilter(
    FILTER.jwtAuthn,
    packAny(
      JwtAuthentication,
      JwtAuthentication.fromPartial({
        providers: {
          [MESH_TOKEN_PROVIDER]: {
            issuer: tokens.issuer,
            audiences: [audience],
            jwksSourceSpecifier: { $case: 'localJwks', value: { specifier: { $case: 'inlineString', value: tokens.jwks } } },
            fromHeaders: [{ name: 'authorization', valuePrefix: 'Bearer ' }],
            forward: false,
            payloadInMetadata: MESH_TOKEN_METADATA_KEY,
            clockSkewSeconds: tokens.clockSkewSeconds,
          },
        },
        rules: [
          // A rule without a requirement verifies nothing: the request goes on without a token.
          ...(probe ? [{ match: probeRouteMatch(probe) }] : []),
          { match: { pathSpecifier: { $case: 'prefix', value: '/' } }, requirementType: { $case: 'requires', value: requirement } },
        ],
      }),
    ),
  );
}

/** The peer whose client certificate (verified by the listener's TLS) carries this SPIFFE ID as its URI SAN. */
function authenticatedPeer(spiffeId: string): Principal {
  return Principal.fromPartial({
    identifier: { $case: 'authenticated', value: { principalName: { matchPattern: { $case: 'exact', value: spiffeId } } } },
  });
}

/**
 * Admits mesh callers whose verified token subject is a service that declared
 * this one as a dependency; with `admitEdge`, also requests without a verified
 * mesh token (they passed ext_authz's edge check); with `probe`, anyone's exact
 * health-check request (that path and method only). No policy at all denies everything (fail closed).
 * `callerSpiffeId` (strict mTLS): a mesh caller must also be the authenticated peer,
 * the very service its token names — a token replayed by another workload is refused.
 */
export function rbacFilter(
  callers: readonly string[],
  admitEdge: boolean,
  probe?: HealthProbe,
  callerSpiffeId?: (caller: string) => string,
): HttpFilter {
  // The common shape (declared callers by their tokens, nothing else) is written around constant bytes.
  if (!admitEdge && !probe && !callerSpiffeId) return httpFilter(FILTER.rbac, encodeMeshCallersRbac(callers));
  return httpFilter(FILTER.rbac, packAny(RBAC, rbacConfig(callers, admitEdge, probe, callerSpiffeId)));
}

/** The RBAC config of `rbacFilter`, the plain way (the reference `encodeMeshCallersRbac` is held to). */
export function rbacConfig(
  callers: readonly string[],
  admitEdge: boolean,
  probe?: HealthProbe,
  callerSpiffeId?: (caller: string) => string,
): RBAC {
  const meshToken = meshTokenPath;
  const policies: Record<string, Policy> = {};
  if (callers.length > 0) {
    policies['mesh-callers'] = Policy.fromPartial({
      permissions: [{ rule: { $case: 'any', value: true } }],
      principals: callers.map((sub) => {
        const tokenSubject = Principal.fromPartial({
          identifier: {
            $case: 'metadata',
            value: {
              ...meshToken('sub'),
              value: { matchPattern: { $case: 'stringMatch', value: { matchPattern: { $case: 'exact', value: sub } } } },
            },
          },
        });
        if (!callerSpiffeId) return tokenSubject;
        return Principal.fromPartial({
          identifier: { $case: 'andIds', value: { ids: [authenticatedPeer(callerSpiffeId(sub)), tokenSubject] } },
        });
      }),
    });
  }
  if (admitEdge) {
    const hasMeshToken = Principal.fromPartial({ identifier: { $case: 'metadata', value: meshTokenVerified() } });
    policies['edge'] = Policy.fromPartial({
      permissions: [{ rule: { $case: 'any', value: true } }],
      principals: [{ identifier: { $case: 'notId', value: hasMeshToken } }],
    });
  }
  if (probe) {
    const { headers, pathSpecifier } = probeRouteMatch(probe);
    policies['health-check'] = Policy.fromPartial({
      permissions: [
        {
          rule: {
            $case: 'andRules',
            value: {
              rules: [
                // url_path ignores the query string, as the route and jwt_authn matches do.
                {
                  rule: {
                    $case: 'urlPath',
                    value: { rule: { $case: 'path', value: { matchPattern: { $case: 'exact', value: pathSpecifier.value } } } },
                  },
                },
                { rule: { $case: 'header', value: headers[0]! } },
              ],
            },
          },
        },
      ],
      principals: [{ identifier: { $case: 'any', value: true } }],
    });
  }
  return RBAC.fromPartial({ rules: { action: RBAC_Action.ALLOW, policies } });
}

// Field tags of the RBAC config written below (RBAC filter, RBAC rules, policies map entry,
// Policy, Principal, MetadataMatcher, ValueMatcher, StringMatcher).
const RBAC_RULES = (1 << 3) | 2;
const RULES_POLICIES = (2 << 3) | 2;
const ENTRY_KEY = (1 << 3) | 2;
const ENTRY_VALUE = (2 << 3) | 2;
const POLICY_PRINCIPALS = (2 << 3) | 2;
const PRINCIPAL_METADATA = (7 << 3) | 2;
const METADATA_VALUE = (3 << 3) | 2;
const VALUE_STRING_MATCH = (3 << 3) | 2;
const STRING_EXACT = (1 << 3) | 2;

let meshCallersConstants: { typeUrl: string; permissions: Uint8Array; subject: Uint8Array } | undefined;
const rbacWriter = new BinaryWriter();

/**
 * `packAny(RBAC, rbacConfig(callers, false))`, byte for byte (filters.test.ts): every inbound listener has one
 * naming its own callers, so they are written around the bytes all of them share (the permission, the
 * token-subject matcher's filter and path) instead of building the policy's object graph.
 */
export function encodeMeshCallersRbac(callers: readonly string[]): Any {
  const c = (meshCallersConstants ??= {
    typeUrl: typeUrlOf(RBAC),
    permissions: Policy.encode(Policy.fromPartial({ permissions: [{ rule: { $case: 'any', value: true } }] })).finish(),
    subject: MetadataMatcher.encode(MetadataMatcher.fromPartial(meshTokenPath('sub'))).finish(),
  });
  let bytes: Uint8Array;
  try {
    const w = rbacWriter.uint32(RBAC_RULES).fork();
    // ALLOW is the zero action, which proto3 leaves out; no callers, no policy (deny all).
    if (callers.length > 0) {
      w.uint32(RULES_POLICIES).fork().uint32(ENTRY_KEY).string('mesh-callers').uint32(ENTRY_VALUE).fork().raw(c.permissions);
      for (const sub of callers) {
        w.uint32(POLICY_PRINCIPALS).fork().uint32(PRINCIPAL_METADATA).fork().raw(c.subject);
        w.uint32(METADATA_VALUE).fork().uint32(VALUE_STRING_MATCH).fork().uint32(STRING_EXACT).string(sub).join().join();
        w.join().join();
      }
      w.join().join();
    }
    bytes = w.join().finish();
  } catch (err) {
    rbacWriter.finish(); // drop what a failed encoding left in the shared writer
    throw err;
  }
  return { $type: 'google.protobuf.Any', typeUrl: c.typeUrl, value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

/** Where jwt_authn put the verified mesh token's payload, and a key in it. */
function meshTokenPath(...keys: string[]) {
  return {
    filter: FILTER.jwtAuthn,
    path: [MESH_TOKEN_METADATA_KEY, ...keys].map((key) => ({ segment: { $case: 'key' as const, value: key } })),
  };
}

/** Admits peers whose verified client certificate carries one of these SPIFFE IDs; none: no policy (deny all). */
function peerPolicies(callerSpiffeIds: readonly string[]): Record<string, Policy> {
  if (callerSpiffeIds.length === 0) return {};
  return {
    'mesh-callers': Policy.fromPartial({
      permissions: [{ rule: { $case: 'any', value: true } }],
      principals: callerSpiffeIds.map(authenticatedPeer),
    }),
  };
}

/**
 * Admits only callers whose verified client certificate carries one of these SPIFFE
 * IDs (the services that declared this one). No caller: no policy, everything is
 * denied (fail closed).
 */
export function peerCertificateRbacFilter(callerSpiffeIds: readonly string[]): HttpFilter {
  return httpFilter(
    FILTER.rbac,
    packAny(RBAC, RBAC.fromPartial({ rules: { action: RBAC_Action.ALLOW, policies: peerPolicies(callerSpiffeIds) } })),
  );
}

/**
 * The same for raw TCP (a strict TCP service): the connection is closed unless the
 * peer's certificate names a declared caller. Runs before tcp_proxy opens anything upstream.
 */
export function networkPeerCertificateRbacFilter(statPrefix: string, callerSpiffeIds: readonly string[]): Filter {
  return Filter.fromPartial({
    name: FILTER.networkRbac,
    configType: {
      $case: 'typedConfig',
      value: packAny(
        NetworkRBAC,
        NetworkRBAC.fromPartial({ statPrefix, rules: { action: RBAC_Action.ALLOW, policies: peerPolicies(callerSpiffeIds) } }),
      ),
    },
  });
}

function tokenBucket(limit: RateLimit) {
  return { maxTokens: limit.maxTokens, tokensPerFill: limit.tokensPerFill, fillInterval: duration(limit.fillIntervalMs) };
}

const ALWAYS = { defaultValue: { numerator: 100, denominator: FractionalPercent_DenominatorType.HUNDRED }, runtimeKey: '' };

/** Listener-wide local rate limit, or (no `limit`) the filter alone, enabled per route. */
export function localRateLimitFilter(statPrefix: string, limit?: RateLimit): HttpFilter {
  return httpFilter(FILTER.localRateLimit, localRateLimitConfig(statPrefix, limit));
}

export function localRateLimitConfig(statPrefix: string, limit?: RateLimit): Any {
  return packAny(
    LocalRateLimit,
    LocalRateLimit.fromPartial(
      limit
        ? {
            statPrefix,
            tokenBucket: tokenBucket(limit),
            filterEnabled: { ...ALWAYS, runtimeKey: `${statPrefix}_enabled` },
            filterEnforced: { ...ALWAYS, runtimeKey: `${statPrefix}_enforced` },
          }
        : { statPrefix },
    ),
  );
}
