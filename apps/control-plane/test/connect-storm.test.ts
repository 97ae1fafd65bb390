// A cell's Envoys reconnecting at once (after a control-plane restart, each within its backoff): a burst of
// simultaneous connections, each sending its preface and an Envoy-sized first ADS request (~52 KB) before the
// control plane has accepted it, against a real control plane. With Node's listen backlog (511, what grpc-js's
// bindAsync uses), Linux answered the connections beyond it with SYN cookies and dropped their handshakes' ACKs;
// a client whose request then went out in several segments was reset (the benchmark's clients saw ECONNRESET at
// 5,000 connections). The xDS port now listens with TRELLIS_GRPC_LISTEN_BACKLOG (4096): every one is served.
import { readFileSync } from 'node:fs';
import { connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { TypeUrl } from '@trellis/envoy-types';
import { DiscoveryRequest } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { AggregatedDiscoveryServiceService } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { startEtcd, type TestEtcd } from '@trellis/testing';
import { envoyNode } from './support/ads-client';
import { startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';

jest.setTimeout(180_000);

/** A kernel setting of the machine the test runs on; undefined off Linux. */
function linuxSetting(path: string): number | undefined {
  try {
    return Number(readFileSync(path, 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return undefined;
  }
}

/** This process's soft limit on open files (both ends of every connection are in it). */
function openFilesLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    return line ? Number(line.split(/\s+/)[3]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Twice Node's 511, so the burst overflows Node's backlog; less where the machine cannot hold it (the kernel caps a
 * backlog at net.core.somaxconn, and each connection takes two descriptors here).
 */
const CONNECTIONS = Math.min(
  1_024,
  linuxSetting('/proc/sys/net/core/somaxconn') ?? 1_024,
  Math.floor(((openFilesLimit() ?? 4_096) - 512) / 2),
);

/** How one connection's ADS stream ended up: its first response, or what cut it. */
type Outcome = { answered: true } | { answered: false; error: string };

/** Opens a connection and an ADS stream on it at once, and writes the first CDS request with an Envoy-sized node. */
function sidecar(address: string, request: Buffer, sessions: ClientHttp2Session[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const session = connect(`http://${address}`);
    sessions.push(session);
    let settled = false;
    const settle = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      resolve(outcome);
    };
    session.on('error', (err: Error) => settle({ answered: false, error: `connection: ${err.message}` }));
    const stream = session.request({
      [h2.HTTP2_HEADER_METHOD]: 'POST',
      [h2.HTTP2_HEADER_PATH]: AggregatedDiscoveryServiceService.streamAggregatedResources.path,
      [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      [h2.HTTP2_HEADER_TE]: 'trailers',
    });
    stream.on('error', (err: Error) => settle({ answered: false, error: `stream: ${err.message}` }));
    stream.on('trailers', (headers) => settle({ answered: false, error: `grpc-status ${String(headers['grpc-status'])}` }));
    stream.on('close', () => settle({ answered: false, error: `stream closed, HTTP/2 code ${stream.rstCode}` }));
    // A gRPC message's 5-byte prefix and some of its body: the control plane answered the request.
    let received = 0;
    stream.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > 5) settle({ answered: true });
    });
    stream.write(request);
  });
}

describe('a connect storm on the xDS port', () => {
  let etcd: TestEtcd;
  let h: ControlPlaneHarness;
  const sessions: ClientHttp2Session[] = [];

  beforeAll(async () => {
    etcd = await startEtcd();
    h = await startControlPlaneHarness({}, undefined, etcd);
    await h.store.createService({ name: 'a', team: 'core', protocol: 'http', port: 8080 }, 'test');
  });
  afterAll(async () => {
    for (const session of sessions) session.destroy();
    await h?.stop();
    await etcd?.close();
  });

  it(`serves every one of ${CONNECTIONS} connections opened at once, each sending an Envoy-sized first request`, async () => {
    const body = DiscoveryRequest.encode(
      DiscoveryRequest.fromPartial({ node: envoyNode('a', { id: 'a-storm' }), typeUrl: TypeUrl.Cluster }),
    ).finish();
    expect(body.length).toBeGreaterThan(40_000);
    const request = Buffer.alloc(5 + body.length);
    request.writeUInt32BE(body.length, 1);
    request.set(body, 5);

    // Every connect in one turn of the event loop, so the control plane accepts none of them before the last is sent.
    const outcomes = await Promise.all(Array.from({ length: CONNECTIONS }, () => sidecar(h.xdsAddress, request, sessions)));

    const failed = outcomes.filter((o): o is Extract<Outcome, { answered: false }> => !o.answered);
    const reasons = [...new Set(failed.map((o) => o.error))];
    expect({ failed: failed.length, reasons }).toEqual({ failed: 0, reasons: [] });
  });
});
