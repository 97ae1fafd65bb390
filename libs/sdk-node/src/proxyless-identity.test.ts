import { proxylessBootstrap, xdsServerUri } from './proxyless-identity';

describe('xdsServerUri', () => {
  it('keeps one address as it is and lists several replicas in one gRPC target', () => {
    expect(xdsServerUri('control-plane:18000')).toBe('control-plane:18000');
    expect(xdsServerUri(['10.0.0.5:18000', '10.0.0.6:18000'])).toBe('ipv4:10.0.0.5:18000,10.0.0.6:18000');
    expect(xdsServerUri('10.0.0.5:18000, 10.0.0.6:18000')).toBe('ipv4:10.0.0.5:18000,10.0.0.6:18000');
    expect(xdsServerUri(['[fd00::5]:18000', '[fd00::6]:18000'])).toBe('ipv6:[fd00::5]:18000,[fd00::6]:18000');
  });

  it('refuses what one gRPC target cannot list, saying what to do instead', () => {
    expect(() => xdsServerUri(['cp-0:18000', 'cp-1:18000'])).toThrow(/one DNS name that resolves to every replica/);
    expect(() => xdsServerUri(['10.0.0.5:18000', '[fd00::6]:18000'])).toThrow(/all be IPv4/);
    expect(() => xdsServerUri([])).toThrow(/at least one/);
  });

  it('is what the bootstrap names as its xDS server', () => {
    const bootstrap = proxylessBootstrap({ xdsServer: ['127.0.0.1:1', '127.0.0.1:2'], service: 'a', nodeId: 'a-1' });
    expect(bootstrap['xds_servers']).toEqual([expect.objectContaining({ server_uri: 'ipv4:127.0.0.1:1,127.0.0.1:2' })]);
  });
});
