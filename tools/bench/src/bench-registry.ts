// The registry as the registry benchmarks run it: in its own process, against the
// bench's etcd, with a fixed admin token and reads open, answering once ready.
import { connectEtcd, KeyLayout } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { startRegistry } from '../../../apps/registry/src/registry';

export const BENCH_ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';

export async function startBenchRegistry(etcdEndpoint: string, etcdPrefix: string) {
  const etcd = connectEtcd({ endpoints: [etcdEndpoint] });
  const registry = await startRegistry({
    config: {
      TRELLIS_HOST: '127.0.0.1',
      TRELLIS_HTTP_PORT: 0,
      TRELLIS_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
      TRELLIS_AUTH_JWKS_URL: undefined,
      TRELLIS_AUTH_ISSUER: undefined,
      TRELLIS_AUTH_AUDIENCE: 'trellis-registry',
      TRELLIS_SERVICE_CREDENTIALS: undefined,
      TRELLIS_CSRF_SECRET: 'bench-csrf-secret-0123456789abcdef0123456789',
      TRELLIS_READS_REQUIRE_AUTH: false,
      TRELLIS_MAX_BODY_BYTES: 64 * 1024,
      TRELLIS_SECURE_COOKIES: false,
    },
    etcd,
    layout: new KeyLayout(etcdPrefix),
    logger: createLogger('registry', 'warn'),
  });
  // Readiness is evaluated on request (no push): ask until etcd answers and the view holds its snapshot.
  while (!(await registry.health.recheck())) await new Promise((resolve) => setTimeout(resolve, 100));
  return { registry, etcd };
}
