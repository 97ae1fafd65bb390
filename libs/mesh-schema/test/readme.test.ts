// The README's example records must stay valid: parse each one with its schema
// and check the key it is shown under names a record of that kind.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyLayout } from '../src/keys';
import * as records from '../src/records';

const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
const examples = [...readme.matchAll(/^### `([^`]+)` — `(\w+)`[\s\S]*?```json\n([\s\S]*?)```/gm)].map(([, key, schema, json]) => ({
  key: key!,
  schema: schema!,
  json: json!,
}));
const kindOf: Record<string, string> = {
  ServiceRecord: 'service',
  HistoryEntry: 'history',
  InstanceRecord: 'instance',
  InstanceDeregistration: 'deregistration',
  MeshSettings: 'meshSettings',
  AuthzPublicKey: 'authzKey',
  ProxyStatus: 'proxyStatus',
};

it('shows an example of every record kind', () => {
  expect(examples.map((e) => e.schema).sort()).toEqual(Object.keys(kindOf).sort());
});

it.each(examples.map((e) => [e.schema, e] as const))('%s example is valid and stored under a matching key', (_name, example) => {
  const schema = (records as unknown as Record<string, { parse(v: unknown): unknown }>)[example.schema]!;
  const value = JSON.parse(example.json);
  expect(schema.parse(value)).toEqual(value);
  expect(new KeyLayout().parse(`/trellis/${example.key}`)?.kind).toBe(kindOf[example.schema]);
});
