import { TypeUrl } from '@trellis/envoy-types';
import { nackReason, servedTypeUrl, PumpScheduler, sentResponse } from './session-common';

describe('session-common', () => {
  it('knows the served types, and answers a decoded type URL with the shared constant', () => {
    const decoded = Buffer.from(TypeUrl.ClusterLoadAssignment).toString('utf8');
    expect(servedTypeUrl(decoded)).toBe(TypeUrl.ClusterLoadAssignment);
    expect(servedTypeUrl('type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig')).toBeUndefined();
  });

  it('reads a NACK as its message, else its code', () => {
    expect(nackReason({ code: 3, message: 'bad cluster b' })).toBe('bad cluster b');
    expect(nackReason({ code: 3, message: '' })).toBe('code 3');
  });

  it('counts the resources and encoded bytes of a response', () => {
    const resource = { name: 'b', typeUrl: TypeUrl.Cluster, any: { typeUrl: TypeUrl.Cluster, value: Buffer.alloc(7) }, hash: 'h' };
    expect(sentResponse(TypeUrl.Cluster, 'v1', 'n1', [resource, resource], 'r9')).toEqual({
      typeUrl: TypeUrl.Cluster,
      version: 'v1',
      nonce: 'n1',
      resources: 2,
      sent: [resource, resource],
      bytes: 14,
      meshRevision: 'r9',
    });
  });
});

describe('PumpScheduler', () => {
  it('runs once for requests that arrive together', async () => {
    const pump = jest.fn();
    const pumps = new PumpScheduler(pump);
    pumps.soon();
    pumps.soon();
    await new Promise((resolve) => setImmediate(resolve));
    expect(pump).toHaveBeenCalledTimes(1);
  });

  it('asks the gate before a pump and runs one pump for everything that arrived while the gate held it', async () => {
    const pump = jest.fn();
    const held: Array<() => void> = [];
    const pumps = new PumpScheduler(pump, (run) => held.push(run));
    pumps.soon();
    await new Promise((resolve) => setImmediate(resolve));
    expect(held).toHaveLength(1);
    expect(pump).not.toHaveBeenCalled();
    // More requests while held: no second run is queued, the held one pumps them all.
    pumps.soon();
    await new Promise((resolve) => setImmediate(resolve));
    expect(held).toHaveLength(1);
    held.shift()!();
    expect(pump).toHaveBeenCalledTimes(1);
    // A gate that lets it go at once pumps at once.
    const direct = new PumpScheduler(pump, (run) => run());
    direct.soon();
    await new Promise((resolve) => setImmediate(resolve));
    expect(pump).toHaveBeenCalledTimes(2);
    // Let go after close: nothing runs.
    pumps.soon();
    await new Promise((resolve) => setImmediate(resolve));
    pumps.close();
    held.shift()!();
    expect(pump).toHaveBeenCalledTimes(2);
  });

  it('keeps the first pending wait and runs nothing after close', async () => {
    const pump = jest.fn();
    const pumps = new PumpScheduler(pump);
    pumps.after(10);
    pumps.after(5_000);
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(pump).toHaveBeenCalledTimes(1);
    pumps.after(10);
    pumps.soon();
    pumps.close();
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(pump).toHaveBeenCalledTimes(1);
  });
});
