import { InstanceRecord } from '@trellis/mesh-schema';
import { EndpointRetention, type RetentionInput } from './endpoint-retention';

const SETTINGS = { share: 0.5, windowMs: 10_000, graceMs: 60_000 };

/** A mutable registry view: services, live instances, tombstones. */
class View implements RetentionInput {
  services = new Set<string>();
  instances = new Map<string, Map<string, InstanceRecord>>();
  deregistered = new Map<string, Set<string>>();

  service(name: string, ...ids: string[]): this {
    this.services.add(name);
    for (const id of ids) this.register(name, id);
    return this;
  }
  register(service: string, id: string, address = `10.0.0.${Number(id.replace(/\D/g, '')) || 1}`): this {
    const record = InstanceRecord.parse({ service, id, address, port: 8080, platform: 'vm', registeredAt: '2026-01-01T00:00:00.000Z' });
    const m = this.instances.get(service) ?? new Map<string, InstanceRecord>();
    m.set(id, record);
    this.instances.set(service, m);
    this.deregistered.get(service)?.delete(id);
    return this;
  }
  /** A lease expiry: the key goes, nothing else is written. */
  expire(service: string, ...ids: string[]): this {
    for (const id of ids) this.instances.get(service)?.delete(id);
    if (this.instances.get(service)?.size === 0) this.instances.delete(service);
    return this;
  }
  /** An explicit deregistration: the key goes and a tombstone is written in the same txn. */
  deregister(service: string, ...ids: string[]): this {
    this.expire(service, ...ids);
    const t = this.deregistered.get(service) ?? new Set<string>();
    for (const id of ids) t.add(id);
    this.deregistered.set(service, t);
    return this;
  }
}

const ids = (r: EndpointRetention, view: View, service: string): string[] =>
  [...(r.overlay(view.instances).get(service)?.keys() ?? [])].sort();

describe('EndpointRetention', () => {
  it('keeps every endpoint of a service whose leases all lapse in one stall, for the grace period', () => {
    const view = new View().service('b', 'i1', 'i2', 'i3');
    const r = new EndpointRetention(SETTINGS);
    r.observe(view, 'all', 0);
    view.expire('b', 'i1', 'i2', 'i3');
    const change = r.observe(view, ['b'], 1_000);
    expect(change.engaged).toEqual([{ service: 'b', expired: 3, live: 0 }]);
    expect(ids(r, view, 'b')).toEqual(['i1', 'i2', 'i3']);
    expect(r.nextDeadline()).toBe(61_000);
    expect(r.list().map((e) => e.id)).toEqual(['i1', 'i2', 'i3']);

    // Nothing changes in etcd; the grace period ends.
    r.observe(view, [], 60_999);
    expect(ids(r, view, 'b')).toEqual(['i1', 'i2', 'i3']);
    expect(r.observe(view, [], 61_000).released).toBe(3);
    expect(ids(r, view, 'b')).toEqual([]);
    expect(r.nextDeadline()).toBeUndefined();
  });

  it('never lets a service go empty because its last lease lapsed', () => {
    const view = new View().service('solo', 'i1');
    const r = new EndpointRetention(SETTINGS);
    r.observe(view, 'all', 0);
    view.expire('solo', 'i1');
    r.observe(view, ['solo'], 5);
    expect(ids(r, view, 'solo')).toEqual(['i1']);
  });

  it('lets an ordinary expiry of a minority of endpoints through', () => {
    const view = new View().service('b', 'i1', 'i2', 'i3', 'i4');
    const r = new EndpointRetention(SETTINGS);
    r.observe(view, 'all', 0);
    view.expire('b', 'i1');
    expect(r.observe(view, ['b'], 1_000).engaged).toEqual([]);
    expect(ids(r, view, 'b')).toEqual(['i2', 'i3', 'i4']);
    // Exactly half is not "more than half".
    view.expire('b', 'i2');
    r.observe(view, ['b'], 20_000);
    expect(ids(r, view, 'b')).toEqual(['i3', 'i4']);
  });

  it('counts expiries spread over the window together, bringing back the earlier ones', () => {
    const view = new View().service('b', 'i1', 'i2', 'i3', 'i4');
    const r = new EndpointRetention(SETTINGS);
    r.observe(view, 'all', 0);
    view.expire('b', 'i1');
    r.observe(view, ['b'], 1_000);
    view.expire('b', 'i2', 'i3');
    r.observe(view, ['b'], 3_000);
    expect(ids(r, view, 'b')).toEqual(['i1', 'i2', 'i3', 'i4']);
    expect(r.list().find((e) => e.id === 'i1')?.until).toBe(61_000); // grace counts from its own expiry
  });

  it('never retains an instance deregistered on purpose, even when all of them go at once', () => {
    const view = new View().service('b', 'i1', 'i2');
    const r = new EndpointRetention(SETTINGS);
    r.observe(view, 'all', 0);
    view.deregister('b', 'i1', 'i2');
    expect(r.observe(view, ['b'], 1_000).engaged).toEqual([]);
    expect(ids(r, view, 'b')).toEqual([]);
  });

  it('releases a retained endpoint that is deregistered later, that registers again, or whose address is taken over', () => {
    const view = new View().service('b', 'i1', 'i2', 'i3');
    const r = new EndpointRetention(SETTINGS);
    r.observe(view, 'all', 0);
    view.expire('b', 'i1', 'i2', 'i3');
    r.observe(view, ['b'], 1_000);
    view.register('b', 'i1'); // same id, back live
    view.register('b', 'new-2', '10.0.0.2'); // a new registration on i2's address
    view.deregistered.set('b', new Set(['i3'])); // tombstone written afterwards
    const change = r.observe(view, ['b'], 2_000);
    expect(change.released).toBe(3);
    expect(ids(r, view, 'b')).toEqual(['i1', 'new-2']);
    expect(r.list()).toEqual([]);
  });

  it('lets the rest go once the service has as many live endpoints as before its loss', () => {
    const view = new View().service('b', 'i1', 'i2');
    const r = new EndpointRetention(SETTINGS);
    r.observe(view, 'all', 0);
    view.expire('b', 'i1', 'i2');
    r.observe(view, ['b'], 1_000);
    view.register('b', 'x5', '10.0.1.5');
    r.observe(view, ['b'], 2_000);
    expect(ids(r, view, 'b')).toEqual(['i1', 'i2', 'x5']);
    view.register('b', 'x6', '10.0.1.6');
    r.observe(view, ['b'], 3_000);
    expect(ids(r, view, 'b')).toEqual(['x5', 'x6']);
  });

  it('drops what it retains for a service that is deleted, and does nothing when turned off', () => {
    const view = new View().service('b', 'i1');
    const r = new EndpointRetention(SETTINGS);
    r.observe(view, 'all', 0);
    view.expire('b', 'i1');
    r.observe(view, ['b'], 1);
    view.services.delete('b');
    r.observe(view, ['b'], 2);
    expect(r.list()).toEqual([]);

    const off = new EndpointRetention({ ...SETTINGS, graceMs: 0 });
    const v2 = new View().service('c', 'i1');
    off.observe(v2, 'all', 0);
    v2.expire('c', 'i1');
    off.observe(v2, ['c'], 1);
    expect(off.overlay(v2.instances)).toBe(v2.instances);
  });

  it('finds departures after a reset (a reloaded snapshot) like after events', () => {
    const view = new View().service('b', 'i1', 'i2').service('c', 'j1');
    const r = new EndpointRetention(SETTINGS);
    r.observe(view, 'all', 0);
    view.expire('b', 'i1', 'i2');
    view.deregister('c', 'j1');
    r.observe(view, 'all', 1_000);
    expect(ids(r, view, 'b')).toEqual(['i1', 'i2']);
    expect(ids(r, view, 'c')).toEqual([]);
  });
});
