import { MeshFixture } from '../model/mesh-fixture';
import { buildProxyResources } from '../envoy/proxy-resources';
import { makeCluster, makeEndpoints, makeListener } from '../../test/support/resources';
import { snapshotInconsistencies } from './consistency';
import { toResourceSet } from './xds-resource';

describe('snapshotInconsistencies', () => {
  it('names a route configuration a listener uses but the set lacks', () => {
    const model = new MeshFixture()
      .key('k1')
      .service('b', { port: 9000 })
      .service('a', { dependencies: [{ service: 'b' }] })
      .model();
    const set = buildProxyResources(model, { service: 'a', kind: 'proxyless' });
    set.get('type.googleapis.com/envoy.config.route.v3.RouteConfiguration')!.clear();
    expect(snapshotInconsistencies(set)).toEqual(['listener "b" uses route configuration "proxyless|b", which is not in the snapshot']);
  });

  it('names an EDS cluster without endpoints and a doubly bound address', () => {
    const set = toResourceSet([makeCluster('c'), makeListener('l1', 80), makeListener('l2', 80), makeListener('l3', 81)]);
    expect(snapshotInconsistencies(set)).toEqual([
      'listeners "l1" and "l2" both bind tcp 127.0.0.1:80',
      'cluster "c" uses endpoints "c", which are not in the snapshot',
    ]);
    expect(snapshotInconsistencies(toResourceSet([makeCluster('c'), makeEndpoints('c', '10.0.0.1:80')]))).toEqual([]);
  });
});
