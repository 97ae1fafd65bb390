import { DEFAULT_REGISTRY_URL, resolveContext } from './context';

const FILE = `
current-context: prod
contexts:
  prod:
    registry: https://registry.prod.example
    control-plane: https://cp.prod.example
    token-file: /secrets/prod.token
  staging:
    registry: https://registry.staging.example
    token: staging-token
`;
const files: Record<string, string> = { '/cfg.yaml': FILE, '/secrets/prod.token': 'prod-token\n' };
const read = (path: string) => files[path];
const env = { TRELLIS_CONFIG: '/cfg.yaml' };

describe('resolveContext', () => {
  it('takes the current context of the config file, its token from a file', () => {
    expect(resolveContext({}, env, read)).toEqual({
      name: 'prod',
      registryUrl: 'https://registry.prod.example',
      controlPlaneUrl: 'https://cp.prod.example',
      token: 'prod-token',
    });
  });

  it('lets --context or TRELLIS_CONTEXT pick another, the environment override it, and flags override both', () => {
    expect(resolveContext({ context: 'staging' }, env, read)).toMatchObject({
      registryUrl: 'https://registry.staging.example',
      token: 'staging-token',
    });
    expect(resolveContext({}, { ...env, TRELLIS_CONTEXT: 'staging', TRELLIS_REGISTRY_URL: 'http://env:1' }, read).registryUrl).toBe(
      'http://env:1',
    );
    expect(resolveContext({ registry: 'http://flag:2', token: 't' }, { ...env, TRELLIS_REGISTRY_URL: 'http://env:1' }, read)).toMatchObject(
      {
        registryUrl: 'http://flag:2',
        token: 't',
      },
    );
  });

  it('falls back to the local mesh without a config file, and names an unknown context or a bad file', () => {
    expect(resolveContext({}, { TRELLIS_CONFIG: '/none.yaml' }, read)).toEqual({
      registryUrl: DEFAULT_REGISTRY_URL,
      controlPlaneUrl: 'http://127.0.0.1:18080',
    });
    expect(() => resolveContext({ context: 'dev' }, env, read)).toThrow(/context "dev" is not in \/cfg.yaml \(it has: prod, staging\)/);
    expect(() => resolveContext({}, env, () => 'contexts:\n  x:\n    registry: not-a-url\n')).toThrow(/contexts.x.registry/);
  });
});
