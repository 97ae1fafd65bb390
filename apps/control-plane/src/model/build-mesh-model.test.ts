import { DEFAULT_TRANSLATOR_SETTINGS } from './mesh-model';
import { buildMeshModel, dependencyPolicy, identityFingerprint, mergePolicy, servicesAffected } from './build-mesh-model';
import { MeshFixture } from './mesh-fixture';

describe('buildMeshModel', () => {
  it('resolves who calls whom, sorted, and drops dependencies on unregistered services with a reason', () => {
    const mesh = new MeshFixture()
      .service('b')
      .service('a', { dependencies: [{ service: 'b' }, { service: 'ghost' }] })
      .service('c', { dependencies: [{ service: 'b' }] });
    const model = mesh.model();
    expect(model.services.get('b')!.callers).toEqual(['a', 'c']);
    expect(model.services.get('a')!.dependencies.map((d) => d.service)).toEqual(['b']);
    expect(model.dropped).toEqual([{ kind: 'dependency', name: 'a→ghost', reason: 'service "ghost" is not registered' }]);
  });

  it('lists the records the watcher could not use among the dropped inputs, first, by key', () => {
    const state = new MeshFixture().service('a').state();
    const invalid = (key: string, kind: 'service' | 'instance', name: string) => ({
      key,
      kind,
      name,
      issues: ['x: bad'],
      modRevision: '9',
    });
    const model = buildMeshModel(
      {
        ...state,
        invalid: new Map([
          ['/t/services/z', invalid('/t/services/z', 'service', 'z')],
          ['/t/instances/a/i', invalid('/t/instances/a/i', 'instance', 'a/i')],
        ]),
      },
      DEFAULT_TRANSLATOR_SETTINGS,
    );
    expect(model.dropped).toEqual([
      { kind: 'instance', name: 'a/i', reason: 'unusable record at /t/instances/a/i: x: bad' },
      { kind: 'service', name: 'z', reason: 'unusable record at /t/services/z: x: bad' },
    ]);
    expect([...model.services.keys()]).toEqual(['a']);
  });

  it("applies a caller's override over the callee's policy field by field", () => {
    const model = new MeshFixture()
      .service('b', { policy: { timeoutMs: 1000, retries: { attempts: 2 } } })
      .service('a', { dependencies: [{ service: 'b', policy: { timeoutMs: 250 } }] })
      .model();
    const dep = model.services.get('a')!.dependencies[0]!;
    const policy = dependencyPolicy(model.services.get('b')!, dep);
    expect(policy.timeoutMs).toBe(250);
    expect(policy.retries?.attempts).toBe(2);
    expect(dep.override).toEqual({ timeoutMs: 250 });
    // The caller's model holds only what it declared; the same pair of policies gives the same object.
    expect(dep).not.toHaveProperty('policy');
    expect(dependencyPolicy(model.services.get('b')!, dep)).toBe(policy);
    expect(mergePolicy({ timeoutMs: 1 }, undefined)).toEqual({ timeoutMs: 1 });
  });

  it('groups instances by locality with summed weights, and selects subsets by labels', () => {
    const model = new MeshFixture()
      .service('b', {
        trafficSplit: [
          { name: 'stable', labels: { track: 'stable' }, weight: 90 },
          { name: 'canary', labels: { track: 'canary' }, weight: 10 },
        ],
      })
      .instance('b', 'b-2', '10.0.0.2', 8080, { labels: { track: 'stable' }, locality: { region: 'eu', zone: 'eu-1' }, weight: 3 })
      .instance('b', 'b-1', '10.0.0.1', 8080, { labels: { track: 'stable' }, locality: { region: 'eu', zone: 'eu-1' } })
      .instance('b', 'b-3', '10.0.0.3', 8080, { labels: { track: 'canary' }, locality: { region: 'us', zone: 'us-1' } })
      .model();
    const b = model.services.get('b')!;
    expect(b.localities.map((l) => [l.locality.zone, l.weight, l.endpoints.map((e) => e.instanceId)])).toEqual([
      ['eu-1', 4, ['b-1', 'b-2']],
      ['us-1', 1, ['b-3']],
    ]);
    expect(b.upstreams.map((u) => [u.subset, u.weight, u.localities.flatMap((l) => l.endpoints.map((e) => e.instanceId))])).toEqual([
      ['canary', 10, ['b-3']],
      ['stable', 90, ['b-1', 'b-2']],
    ]);
  });

  it('keeps draining instances as draining endpoints that add no locality weight', () => {
    const drainingSince = '2026-01-01T00:00:00.000Z';
    const b = new MeshFixture()
      .service('b')
      .instance('b', 'b-1', '10.0.0.1', 8080, { locality: { zone: 'z1' }, weight: 2 })
      .instance('b', 'b-2', '10.0.0.2', 8080, { locality: { zone: 'z1' }, drainingSince })
      .instance('b', 'b-3', '10.0.0.3', 8080, { locality: { zone: 'z2' }, weight: 5, drainingSince })
      .model()
      .services.get('b')!;
    expect(b.localities.map((l) => [l.locality.zone, l.weight, l.endpoints.map((e) => [e.instanceId, e.draining ?? false])])).toEqual([
      [
        'z1',
        2,
        [
          ['b-1', false],
          ['b-2', true],
        ],
      ],
      ['z2', 1, [['b-3', true]]],
    ]);
  });

  it('leaves zero-weight subsets out of the upstreams', () => {
    const model = new MeshFixture()
      .service('b', {
        trafficSplit: [
          { name: 'stable', labels: {}, weight: 100 },
          { name: 'canary', labels: { track: 'canary' }, weight: 0 },
        ],
      })
      .model();
    expect(model.services.get('b')!.upstreams.map((u) => u.subset)).toEqual(['stable']);
  });

  it('drops a TCP dependency whose port is taken in the caller sidecar', () => {
    const model = new MeshFixture()
      .service('db', { protocol: 'tcp', port: 5432 })
      .service('cache', { protocol: 'tcp', port: 5432 })
      .service('a', { port: 8080, dependencies: [{ service: 'db' }, { service: 'cache' }] })
      .model();
    expect(model.services.get('a')!.dependencies.map((d) => d.service)).toEqual(['cache']);
    expect(model.dropped).toEqual([{ kind: 'dependency', name: 'a→db', reason: "TCP port 5432 is already taken in a's sidecar" }]);
  });

  it('inlines published keys as a JWKS and takes the issuer from mesh settings, falling back to the default', () => {
    const mesh = new MeshFixture().service('a').key('k2').key('k1');
    const model = mesh.model();
    expect(model.tokens.keyIds).toEqual(['k1', 'k2']);
    const jwks = JSON.parse(model.tokens.jwks) as { keys: Array<{ kid: string; kty: string; e: string }> };
    expect(jwks.keys.map((k) => [k.kid, k.kty, k.e])).toEqual([
      ['k1', 'RSA', 'AQAB'],
      ['k2', 'RSA', 'AQAB'],
    ]);
    mesh.meshSettings = undefined;
    expect(buildMeshModel(mesh.state(), { ...DEFAULT_TRANSLATOR_SETTINGS, defaultTokenIssuer: 'fallback' }).tokens.issuer).toBe('fallback');
  });
});

describe('servicesAffected', () => {
  const base = () =>
    new MeshFixture()
      .service('b')
      .service('a', { dependencies: [{ service: 'b' }] })
      .service('c')
      .service('d', { dependencies: [{ service: 'c' }] })
      .instance('b', 'b-1', '10.0.0.1');

  it('is every service for the first model and nothing for an identical one', () => {
    const mesh = base();
    const first = mesh.model();
    expect([...servicesAffected(undefined, first)].sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(servicesAffected(first, mesh.model())).toEqual(new Set());
  });

  it('is the callers of a service whose instances changed, not the service itself nor strangers', () => {
    const mesh = base();
    const before = mesh.model();
    mesh.instance('b', 'b-2', '10.0.0.2');
    expect(servicesAffected(before, mesh.model())).toEqual(new Set(['a']));
  });

  it('is the caller and the callee when a dependency is added (the callee admits a new caller)', () => {
    const mesh = base();
    const before = mesh.model();
    mesh.service('a', { dependencies: [{ service: 'b' }, { service: 'c' }] });
    expect(servicesAffected(before, mesh.model())).toEqual(new Set(['a', 'c']));
  });

  it('is a removed service and its callers', () => {
    const mesh = base();
    const before = mesh.model();
    mesh.withoutService('c');
    expect(servicesAffected(before, mesh.model())).toEqual(new Set(['c', 'd']));
  });

  it('is a caller whose dependency was dropped and declared again in one batch (its proxyless cluster names change)', () => {
    const mesh = base();
    const before = mesh.model();
    mesh.service('a', { dependencies: [{ service: 'b' }] }, { generation: 3, dependencySince: { b: 3 } });
    expect(servicesAffected(before, mesh.model())).toEqual(new Set(['a']));
  });

  it('is everything when the keys rotate', () => {
    const mesh = base();
    const before = mesh.model();
    mesh.key('k1');
    expect(servicesAffected(before, mesh.model()).size).toBe(4);
  });
});

describe('buildMeshModel with the previous model', () => {
  it('gives exactly what a full build gives, through a sequence of changes', () => {
    const mesh = new MeshFixture()
      .key('k1')
      .service('b', {
        trafficSplit: [
          { name: 'v1', labels: { v: '1' }, weight: 50 },
          { name: 'v2', labels: { v: '2' }, weight: 50 },
        ],
      })
      .service('a', { dependencies: [{ service: 'b' }, { service: 'x' }] })
      .service('c', { dependencies: [{ service: 'a' }] })
      .instance('b', 'b-1', '10.0.0.1', 8080, { labels: { v: '1' } });
    const changes: Array<(m: MeshFixture) => unknown> = [
      (m) => m.instance('b', 'b-2', '10.0.0.2', 8080, { labels: { v: '2' } }),
      (m) => m.service('x'),
      (m) => m.withoutInstance('b', 'b-1'),
      (m) => m.service('b', { policy: { timeoutMs: 5 } }),
      (m) => m.key('k2'),
      (m) => m.service('c'),
      (m) => m.withoutService('a'),
    ];
    let previous = buildMeshModel(mesh.state(), DEFAULT_TRANSLATOR_SETTINGS);
    for (const change of changes) {
      change(mesh);
      const state = mesh.state();
      const incremental = buildMeshModel(state, DEFAULT_TRANSLATOR_SETTINGS, previous);
      const full = buildMeshModel(state, DEFAULT_TRANSLATOR_SETTINGS);
      for (const name of full.services.keys()) expect(identityFingerprint(incremental, name)).toBe(identityFingerprint(full, name));
      expect(new Map(incremental.services)).toEqual(new Map(full.services));
      expect(incremental.dropped).toEqual(full.dropped);
      previous = incremental;
    }
  });
});

describe('the callers list of a changed service', () => {
  it('follows a declaring record that now names another service, though its dependencies stay the same', () => {
    const mesh = new MeshFixture().service('hub').service('a', { dependencies: [{ service: 'hub' }] });
    const before = mesh.model();
    mesh.service('hub', { policy: { timeoutMs: 5 } });
    const misnamed = mesh.services.get('a')!;
    mesh.services.set('a', { ...misnamed, value: { ...misnamed.value, spec: { ...misnamed.value.spec, name: 'other' } } });
    const state = mesh.state();
    const incremental = buildMeshModel(state, DEFAULT_TRANSLATOR_SETTINGS, before, new Set(['hub', 'a']));
    const full = buildMeshModel(state, DEFAULT_TRANSLATOR_SETTINGS);
    expect(full.services.get('hub')!.callers).toEqual(['other']);
    expect(new Map(incremental.services)).toEqual(new Map(full.services));
  });
});

describe('reserved sidecar ports', () => {
  it('gives no inbound listener to a service registered on the outbound or admin port, and says why', () => {
    const model = new MeshFixture().service('odd', { port: 15001 }).service('ok', { port: 8080 }).model();
    expect(model.services.get('odd')!.inbound).toBe(false);
    expect(model.services.get('ok')!.inbound).toBe(true);
    expect(model.dropped).toEqual([
      {
        kind: 'service',
        name: 'odd',
        reason: 'port 15001 is reserved in sidecars (outbound 15001, admin 15000): its sidecars get no inbound listener',
      },
    ]);
  });
});
