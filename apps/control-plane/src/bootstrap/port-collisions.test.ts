import { MeshFixture } from '../model/mesh-fixture';
import { bootstrapPortCollision } from './port-collisions';

describe('bootstrapPortCollision', () => {
  const model = new MeshFixture()
    .service('db', { protocol: 'tcp', port: 5432 })
    .service('b', { protocol: 'http', port: 9000 })
    .service('a', { protocol: 'http', port: 8080, dependencies: [{ service: 'db' }, { service: 'b' }] })
    .model();
  const a = model.services.get('a')!;
  const check = (appPort: number, adminPort?: number, outboundPort?: number) =>
    bootstrapPortCollision(model, a, { appPort, ...(adminPort ? { adminPort } : {}), ...(outboundPort ? { outboundPort } : {}) });

  it('accepts ports nothing in the sidecar binds', () => {
    expect(check(3000)).toBeUndefined();
    expect(check(3000, 19000)).toBeUndefined();
    // b is HTTP: reached through the outbound listener, its port is free in a's sidecar.
    expect(check(9000)).toBeUndefined();
  });

  it.each([
    [8080, undefined, 'the inbound listener'],
    [15001, undefined, 'the outbound listener'],
    [15000, undefined, "Envoy's admin interface"],
    [19000, 19000, "Envoy's admin interface"],
    [5432, undefined, 'TCP dependency "db"'],
  ])('refuses app_port %i (admin_port %s): it is taken by %s', (appPort, adminPort, what) => {
    expect(check(appPort, adminPort)).toEqual({ field: 'app_port', detail: expect.stringContaining(what) });
  });

  it.each([
    [8080, 'the inbound listener'],
    [15001, 'the outbound listener'],
    [5432, 'TCP dependency "db"'],
  ])('refuses admin_port %i: it is taken by %s', (adminPort, what) => {
    expect(check(3000, adminPort)).toEqual({ field: 'admin_port', detail: expect.stringContaining(what) });
  });

  // Two sidecars on one VM each take their own admin and outbound ports.
  it('accepts a per-sidecar outbound port, and the mesh-wide one becomes free for the app', () => {
    expect(check(3000, 15100, 15101)).toBeUndefined();
    expect(check(15001, 15100, 15101)).toBeUndefined();
    expect(check(15000, 15100, 15101)).toBeUndefined();
  });

  it.each([
    [8080, undefined, 'the inbound listener'],
    [5432, undefined, 'TCP dependency "db"'],
    [15000, undefined, "Envoy's admin interface"],
    [19000, 19000, "Envoy's admin interface"],
  ])('refuses outbound_port %i (admin_port %s): it is taken by %s', (outboundPort, adminPort, what) => {
    expect(check(3000, adminPort, outboundPort)).toEqual({ field: 'outbound_port', detail: expect.stringContaining(what) });
  });

  it('refuses an app_port on the outbound port it is given', () => {
    expect(check(15101, 15100, 15101)).toEqual({ field: 'app_port', detail: expect.stringContaining('the outbound listener') });
  });

  it('refuses a ready_port the sidecar binds otherwise, and an app_port on the ready_port', () => {
    expect(bootstrapPortCollision(model, a, { appPort: 3000, readyPort: 15021 })).toBeUndefined();
    expect(bootstrapPortCollision(model, a, { appPort: 3000, readyPort: 8080 })).toEqual({
      field: 'ready_port',
      detail: expect.stringContaining('the inbound listener'),
    });
    expect(bootstrapPortCollision(model, a, { appPort: 3000, readyPort: 15000 })).toEqual({
      field: 'ready_port',
      detail: expect.stringContaining('admin'),
    });
    expect(bootstrapPortCollision(model, a, { appPort: 15021, readyPort: 15021 })).toEqual({
      field: 'app_port',
      detail: expect.stringContaining('the readiness listener'),
    });
  });
});
