// A real grpc-js-xds client rejects a listener: it is sent once (no resend
// storm), the NACK is recorded, and the next good config reaches the client.
import { TypeUrl } from '@trellis/envoy-types';
import { buildProxyResources } from '../src/envoy';
import { toResourceSet } from '../src/resource';
import { MeshFixture } from '../src/model/mesh-fixture';
import { startAdsHarness, type AdsHarness } from './support/ads-harness';
import { makeListener, type FakeModel } from './support/resources';
import { startWhoServer } from './support/who-service';
import { streakOf, XdsClientProcess } from './support/xds-client-process';

jest.setTimeout(120_000);

describe('grpc-js-xds NACK', () => {
  let harness: AdsHarness;
  let client: XdsClientProcess | undefined;
  let server: { port: number; stop(): Promise<void> };

  beforeAll(async () => {
    server = await startWhoServer('b-1');
  });
  afterAll(async () => {
    await client?.stop();
    await server?.stop();
    await harness?.stop();
  });

  it('sends a rejected listener once, then the fixed config when it exists', async () => {
    const model = new MeshFixture()
      .service('b')
      .service('a', { dependencies: [{ service: 'b' }] })
      .instance('b', 'b-1', '127.0.0.1', server.port, { locality: { region: 'local', zone: 'z1', subZone: '' } })
      .model();
    const good = buildProxyResources(model, { service: 'a', kind: 'proxyless' });
    // The same config, but the API listener for "b" lacks its api_listener: grpc-js-xds must reject it.
    const broken = [...good.values()]
      .flatMap((byName) => [...byName.values()])
      .map((r) => (r.typeUrl === TypeUrl.Listener && r.name === 'b' ? makeListener('b') : r));
    harness = await startAdsHarness(new Map([['a', toResourceSet(broken)]]) as FakeModel);

    const t0 = Date.now();
    client = await XdsClientProcess.start({ xdsAddress: harness.address, service: 'a', nodeId: 'a-nack-1', target: 'b' });
    await client.waitFor(
      'calls to fail',
      t0,
      streakOf(3, (r) => !r.ok),
    );
    const nacks = () => harness.events.filter((e) => e.event === 'onNack' && e.args[1] === TypeUrl.Listener);
    const listenerPushes = () =>
      harness.events.filter((e) => e.event === 'onResponse' && (e.args[1] as { typeUrl: string }).typeUrl === TypeUrl.Listener);
    expect(nacks()).toHaveLength(1);
    expect(String(nacks()[0]!.args[3])).not.toBe('');
    // Two more seconds of calls and retries: still exactly one listener response.
    await new Promise((r) => setTimeout(r, 2000));
    expect(listenerPushes()).toHaveLength(1);
    expect(nacks()).toHaveLength(1);

    const t1 = Date.now();
    harness.setModel(new Map([['a', good]]) as FakeModel);
    const reached = await client.waitFor('a call to b-1', t1, (rs) => rs.find((r) => r.ok && r.instance === 'b-1'));
    console.log(
      `grpc-js-xds: fixed config → first successful call in ${reached - t1} ms; listener responses sent in total: ${listenerPushes().length}`,
    );
    expect(listenerPushes()).toHaveLength(2);
  });
});
