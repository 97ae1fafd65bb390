// Registers the demo topology (topology.json) with the registry, idempotently:
// create each service, or replace its definition when it already exists.
// Leaves first, so every dependency exists when a caller declares it.
import { readFileSync } from 'node:fs';

const registry = process.env.REGISTRY_URL ?? 'http://registry:8080';
const token = process.env.REGISTRY_TOKEN;
if (!token) {
  console.error('seed: REGISTRY_TOKEN is required');
  process.exit(2);
}
const { services } = JSON.parse(readFileSync(new URL('./topology.json', import.meta.url), 'utf8'));
const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

for (const spec of [...services].reverse()) {
  let res = await fetch(`${registry}/api/v1/services`, { method: 'POST', headers, body: JSON.stringify(spec) });
  if (res.status === 409) {
    // Already there (a re-run): replace it, naming the revision replaced (If-Match, as the API requires).
    const current = await fetch(`${registry}/api/v1/services/${spec.name}`, { headers });
    const etag = current.headers.get('etag') ?? '*';
    res = await fetch(`${registry}/api/v1/services/${spec.name}`, {
      method: 'PUT',
      headers: { ...headers, 'if-match': etag },
      body: JSON.stringify(spec),
    });
  }
  if (!res.ok) {
    console.error(`seed: ${spec.name}: HTTP ${res.status} ${await res.text()}`);
    process.exit(1);
  }
  console.log(`seed: ${spec.name} registered`);
}
