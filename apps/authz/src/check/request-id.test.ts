import { Metadata } from '@grpc/grpc-js';
import { CheckRequest } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { checkRequest, outbound } from '../../test/support/harness';
import { decodeCheckAttributes } from './check-attributes';
import { checkRequestId } from './request-id';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const attributes = (headers: Record<string, string>) =>
  decodeCheckAttributes(CheckRequest.encode(checkRequest({ ...outbound('a', 'b'), headers })).finish());
const metadata = (entries: Record<string, string>) => {
  const m = new Metadata();
  for (const [k, v] of Object.entries(entries)) m.set(k, v);
  return m;
};

describe('checkRequestId', () => {
  it("takes the decided request's x-request-id before anything else", () => {
    expect(checkRequestId(attributes({ 'x-request-id': 'req-1', traceparent: TRACEPARENT }), metadata({ 'x-request-id': 'grpc-1' }))).toBe(
      'req-1',
    );
  });

  it("takes the trace id of the request's traceparent, then the Check call's own metadata", () => {
    expect(checkRequestId(attributes({ traceparent: TRACEPARENT }), metadata({ 'x-request-id': 'grpc-1' }))).toBe(TRACE_ID);
    expect(checkRequestId(attributes({}), metadata({ 'x-request-id': 'grpc-1' }))).toBe('grpc-1');
    expect(checkRequestId(attributes({}), metadata({ traceparent: TRACEPARENT }))).toBe(TRACE_ID);
  });

  it('generates one when nothing usable came, and for a request that could not be decoded', () => {
    expect(checkRequestId(attributes({ 'x-request-id': 'forged {"level":60}' }), metadata({ traceparent: 'junk' }))).toMatch(UUID);
    expect(checkRequestId(attributes({}), undefined)).toMatch(UUID);
    expect(checkRequestId(decodeCheckAttributes(Buffer.from([0x0a, 0x05, 0x01])), undefined)).toMatch(UUID);
  });
});
