// A Check decision and its translation into the ext_authz CheckResponse.
// A denial is a successful RPC whose status is not OK and which carries a
// denied_response: failing the RPC itself would hand the decision to the
// proxy's failure_mode_allow, so that is never how authz says no.
import { HeaderValueOption_HeaderAppendAction } from '@trellis/envoy-types/envoy/config/core/v3/base';
import type { CheckResponse } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { CALL_REFUSALS, TOKEN_REJECTIONS } from '@trellis/mesh-contracts';
import { ACCESS_REJECTIONS } from '../edge/cloudflare-access';

/** Refusals for who sent a Check (check/caller-identity.ts); they also label trellis_authz_caller_identity_denials_total. */
export const CALLER_IDENTITY_DENIALS = [
  'peer-unauthenticated',
  'peer-unknown-identity',
  'peer-not-a-service',
  'source-mismatch',
  'destination-mismatch',
  'edge-peer-not-allowed',
] as const;
export type CallerIdentityDenial = (typeof CALLER_IDENTITY_DENIALS)[number];

/**
 * Why a Check is denied. It labels trellis_authz_checks_total, so it is a closed
 * set: a new reason is added here, never composed from request data.
 */
export const DENY_REASONS = [
  'internal-error',
  'malformed-request',
  'not-ready',
  'missing-context',
  'no-signing-key',
  'non-canonical-path',
  'no-ingress',
  ...CALLER_IDENTITY_DENIALS,
  ...CALL_REFUSALS,
  ...TOKEN_REJECTIONS.map((r) => `token-${r}` as const),
  ...ACCESS_REJECTIONS.map((r) => `access-${r}` as const),
] as const;
export type DenyReason = (typeof DENY_REASONS)[number];
export type DecisionReason = 'allowed' | DenyReason;

export type Decision =
  | {
      allow: true;
      reason: 'allowed';
      headers: Readonly<Record<string, string>>;
      removeHeaders?: readonly string[];
    }
  | { allow: false; reason: DenyReason; grpcCode: GrpcStatus; httpStatus: number; message: string };

export const allow = (headers: Record<string, string> = {}, removeHeaders: string[] = []): Decision => ({
  allow: true,
  reason: 'allowed',
  headers,
  removeHeaders,
});

/** 403: the caller is known and not allowed. */
export const forbid = (reason: DenyReason, message: string): Decision => ({
  allow: false,
  reason,
  grpcCode: GrpcStatus.PERMISSION_DENIED,
  httpStatus: 403,
  message,
});

/** 401: no credential, or one that does not verify. */
export const unauthenticated = (reason: DenyReason, message: string): Decision => ({
  allow: false,
  reason,
  grpcCode: GrpcStatus.UNAUTHENTICATED,
  httpStatus: 401,
  message,
});

/** 503: authz cannot decide yet (no registry snapshot, no signing key, certs unreachable) and so refuses. */
export const unavailable = (reason: DenyReason, message: string): Decision => ({
  allow: false,
  reason,
  grpcCode: GrpcStatus.UNAVAILABLE,
  httpStatus: 503,
  message,
});

/** 400/403: the proxy's configuration does not say what to check. */
export const misconfigured = (reason: DenyReason, message: string): Decision => ({
  allow: false,
  reason,
  grpcCode: GrpcStatus.INVALID_ARGUMENT,
  httpStatus: 403,
  message,
});

const header = (key: string, value: string) => ({
  header: { key, value, rawValue: Buffer.alloc(0) },
  append: undefined,
  appendAction: HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
  keepEmptyValue: false,
});

export function toCheckResponse(decision: Decision): CheckResponse {
  if (decision.allow) {
    return {
      status: { code: GrpcStatus.OK, message: '', details: [] },
      httpResponse: {
        $case: 'okResponse',
        value: {
          headers: Object.entries(decision.headers).map(([key, value]) => header(key, value)),
          headersToRemove: [...(decision.removeHeaders ?? [])],
          dynamicMetadata: undefined,
          responseHeadersToAdd: [],
          queryParametersToSet: [],
          queryParametersToRemove: [],
        },
      },
      dynamicMetadata: undefined,
    };
  }
  return {
    status: { code: decision.grpcCode, message: `${decision.reason}: ${decision.message}`, details: [] },
    httpResponse: {
      $case: 'deniedResponse',
      value: {
        status: { code: decision.httpStatus },
        headers: [header('content-type', 'application/json'), header('x-trellis-authz-reason', decision.reason)],
        body: JSON.stringify({
          error: decision.httpStatus === 401 ? 'unauthenticated' : decision.httpStatus === 503 ? 'unavailable' : 'forbidden',
          reason: decision.reason,
          message: decision.message,
        }),
      },
    },
    dynamicMetadata: undefined,
  };
}
