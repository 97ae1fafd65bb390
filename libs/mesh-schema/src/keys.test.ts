import { DEFAULT_PREFIX, KeyLayout } from './keys';

describe('KeyLayout', () => {
  const layout = new KeyLayout('/mesh/');

  it('defaults to /trellis/', () => {
    expect(new KeyLayout().prefix).toBe(DEFAULT_PREFIX);
    expect(new KeyLayout().service('a')).toBe('/trellis/services/a');
  });

  it.each(['', 'trellis/', '/trellis', '//', '/a//b/'])('refuses the prefix %j', (prefix) => {
    expect(() => new KeyLayout(prefix)).toThrow(/prefix/);
  });

  it.each([
    ['service', layout.service('cart'), { kind: 'service', service: 'cart' }],
    ['instance', layout.instance('cart', 'vm-1.eu'), { kind: 'instance', service: 'cart', id: 'vm-1.eu' }],
    ['history', layout.history('cart', 12), { kind: 'history', service: 'cart', id: '0000000012' }],
    ['mesh settings', layout.meshSettings(), { kind: 'meshSettings' }],
    ['authz key', layout.authzKey('2026-01-k1'), { kind: 'authzKey', id: '2026-01-k1' }],
    [
      'proxy status',
      layout.proxyStatus('cart', 'sidecar~10.0.0.1~cart/pod.ns', 'cp-0/17'),
      { kind: 'proxyStatus', service: 'cart', id: 'sidecar~10.0.0.1~cart/pod.ns' },
    ],
    [
      'legacy proxy status',
      '/mesh/proxies/cart/sidecar~10.0.0.1~cart%2Fpod.ns/cp-0%2F17',
      { kind: 'proxyStatus', service: 'cart', id: 'sidecar~10.0.0.1~cart/pod.ns' },
    ],
  ])('round-trips a %s key through parse', (_what, key, parsed) => {
    expect(key.startsWith('/mesh/')).toBe(true);
    expect(layout.parse(key)).toEqual(parsed);
  });

  it('puts the status records after every key of the mesh: the mesh watch ends where they begin', () => {
    const { start, end } = layout.meshWatchRange();
    const inWatch = (key: string) =>
      Buffer.compare(Buffer.from(key), Buffer.from(start)) >= 0 && Buffer.compare(Buffer.from(key), Buffer.from(end)) < 0;
    const highest = '\u00ff'.repeat(3);
    const mesh = [
      layout.service('zzzz'),
      layout.instance('zzzz', highest),
      layout.deregistration('zzzz', highest),
      layout.history('zzzz', 9_999_999_999),
      layout.meshSettings(),
      layout.authzKey(highest),
      layout.hostClaim(highest),
      `${layout.legacyProxyStatusesOf('zzzz')}${highest}/${highest}`,
    ];
    for (const key of mesh) expect([key, inWatch(key)]).toEqual([key, true]);
    expect(end).toBe(layout.statusRecords());
    expect(layout.proxyStatuses().startsWith(layout.statusRecords())).toBe(true);
    expect(inWatch(layout.proxyStatus('a', 'n', 's'))).toBe(false);
    expect(inWatch(layout.proxyStatus('zzzz', highest, highest))).toBe(false);
  });

  it('pads history generations so keys sort in generation order', () => {
    const keys = [1, 2, 10, 100, 9].map((g) => layout.history('cart', g)).sort();
    expect(keys.map((k) => Number(k.split('/').pop()))).toEqual([1, 2, 9, 10, 100]);
  });

  it('keeps every record inside its range prefix', () => {
    expect(layout.service('a').startsWith(layout.services())).toBe(true);
    expect(layout.instance('a', 'i').startsWith(layout.instancesOf('a'))).toBe(true);
    expect(layout.instancesOf('a').startsWith(layout.instances())).toBe(true);
    expect(layout.history('a', 1).startsWith(layout.historyOf('a'))).toBe(true);
    expect(layout.authzKey('k').startsWith(layout.authzKeys())).toBe(true);
    expect(layout.proxyStatus('a', 'n', 's').startsWith(layout.proxyStatusesOf('a'))).toBe(true);
    expect(layout.proxyStatusesOf('a').startsWith(layout.proxyStatuses())).toBe(true);
    expect(layout.legacyProxyStatusesOf('a').startsWith(layout.legacyProxyStatuses())).toBe(true);
  });

  it.each(['', 'a/b', '..', '.', 'a\u0000', 'a\nb', 'a\u007f'])('refuses the segment %j', (bad) => {
    expect(() => layout.service(bad)).toThrow(/not a valid etcd key segment/);
    expect(() => layout.instance('cart', bad)).toThrow(/not a valid etcd key segment/);
    expect(() => layout.authzKey(bad)).toThrow(/not a valid etcd key segment/);
  });

  it('does not claim keys outside its layout', () => {
    for (const key of [
      '/other/services/a',
      '/mesh/services/A',
      '/mesh/services/a/b',
      '/mesh/instances/a',
      '/mesh/instances/a/b/c',
      '/mesh/instances/a/',
      '/mesh/proxies//n',
      '/mesh/status/proxies/a/n',
      '/mesh/status/other/a/n/s',
      '/mesh/status/a',
      '/mesh/mesh/other',
      '/mesh/authz/other/k',
      '/mesh/unknown/a',
      '/mesh/',
    ]) {
      expect(layout.parse(key)).toBeUndefined();
    }
  });
});
