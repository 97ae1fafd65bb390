// The fast path (a record the schema accepted once, written again as it is) against the
// reference (encodeValue with the full schema) on random records changed in place, as the
// control plane's status writer changes its records, and in ways it never does.
import fc from 'fast-check';
import { encodeValue } from '../codec';
import { InvalidRecordError } from '../errors';
import { ProxyStatus } from '../records';
import { propertyRuns } from '../testing/arbitraries';
import { ProxyStatusEncoder } from './proxy-status-encoder';
import type { StreamProxyStatus } from './proxy-status-store';

const isoTime = fc.date({ min: new Date('1970-01-01'), max: new Date('2200-01-01'), noInvalidDate: true }).map((d) => d.toISOString());
/** Times the schema accepts and times it refuses, some of them shaped like toISOString's. */
const time = fc.oneof(
  { weight: 6, arbitrary: isoTime },
  fc.constantFrom(
    '2026-13-01T00:00:00.000Z',
    '2026-02-30T00:00:00.000Z',
    '2024-02-29T23:59:59.999Z',
    '1900-02-29T00:00:00.000Z',
    '0000-01-01T00:00:00.000Z',
    '+010000-01-01T00:00:00.000Z',
    '2026-01-01T24:00:00.000Z',
    '2026-01-01T00:00:00Z',
    '2026-01-01T00:00:00.000+01:00',
    '',
  ),
);
const text = (maxLength: number) => fc.oneof(fc.string({ maxLength }), fc.string({ minLength: maxLength - 2, maxLength: maxLength + 2 }));
const revision = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }).map(String),
  fc.string({ maxLength: 22 }),
  fc.constant('12345678901234567890'),
);
const nodeId = fc.oneof(fc.string({ minLength: 1, maxLength: 40 }), fc.constantFrom('', 'a\nb', 'x'.repeat(256), 'x'.repeat(257)));
const service = fc.oneof(fc.constantFrom('a', 'svc-1', 'checkout'), fc.constantFrom('', 'Bad_Name', '-x'));
const typeName = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('lds', 'rds', 'cds', 'eds', 'sds') },
  fc.constantFrom('xds', '__proto__x'),
);

const initial = fc.record({
  service,
  nodeId,
  controlPlane: text(256),
  streamNumber: fc.nat(100_000),
  connectedAt: time,
  updatedAt: time,
  placeholders: fc.boolean(),
});

/** A change made in place to the record object (most as the writer makes them). */
const change = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('updatedAt' as const), value: time }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('meshRevision' as const), value: fc.option(text(32), { nil: undefined }) }) },
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('version' as const),
      type: typeName,
      field: fc.constantFrom('lastSentVersion', 'lastAckedVersion'),
      value: fc.oneof(
        { weight: 5, arbitrary: fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 16, maxLength: 16 }) },
        text(128),
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('nack' as const),
      type: typeName,
      version: text(128),
      error: fc.oneof(
        fc.string({ maxLength: 60 }),
        fc.integer({ min: 4090, max: 4100 }).map((n) => 'e'.repeat(n)),
      ),
      at: time,
      meshRevision: fc.option(revision, { nil: undefined }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('skeleton' as const),
      field: fc.constantFrom('service', 'nodeId', 'controlPlane', 'stream', 'connectedAt'),
      value: fc.oneof(service, nodeId, time, text(300)),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('extra' as const), where: fc.constantFrom('record', 'type', 'nack') }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('reorder' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('odd' as const),
      what: fc.constantFrom('typesArray', 'undefinedEntry', 'nullNack', 'typesMissing'),
    }),
  },
);

type Change = typeof change extends fc.Arbitrary<infer T> ? T : never;
type Mutable = Record<string, unknown> & { types: Record<string, Record<string, unknown> | undefined> };

function apply(status: Mutable, c: Change): void {
  status.types ??= {}; // after an 'odd' change took it away
  switch (c.op) {
    case 'updatedAt':
      status.updatedAt = c.value;
      break;
    case 'meshRevision':
      status.meshRevision = c.value;
      break;
    case 'version':
      (status.types[c.type] ??= { lastSentVersion: undefined, lastAckedVersion: undefined, lastNack: undefined })[c.field] = c.value;
      break;
    case 'nack': {
      const entry = (status.types[c.type] ??= {});
      entry.lastNack = {
        version: c.version,
        error: c.error,
        at: c.at,
        ...(c.meshRevision !== undefined ? { meshRevision: c.meshRevision } : {}),
      };
      break;
    }
    case 'skeleton':
      status[c.field] = c.value;
      break;
    case 'extra': {
      const entry = Object.values(status.types).find((e) => e !== undefined);
      const nack = entry?.lastNack as Record<string, unknown> | undefined;
      const target = c.where === 'record' ? status : c.where === 'type' ? entry : nack;
      if (target) target.extra = 'x';
      break;
    }
    case 'reorder': {
      // meshRevision set after types: the same record, keys out of the schema's order.
      const value = status.meshRevision;
      delete status.meshRevision;
      status.meshRevision = value ?? '7';
      break;
    }
    case 'odd':
      if (c.what === 'typesArray') status.types = [] as unknown as Mutable['types'];
      else if (c.what === 'undefinedEntry') status.types.cds = undefined;
      else if (c.what === 'nullNack') (status.types.lds ??= {}).lastNack = null;
      else delete (status as Partial<Mutable>).types;
      break;
  }
}

/** What the reference makes of the record: its bytes, or its InvalidRecordError's message and issues. */
function reference(status: StreamProxyStatus): string {
  try {
    return encodeValue(ProxyStatus, `proxy status ${JSON.stringify(`${status.service}/${status.nodeId}`)}`, status).bytes.toString('utf8');
  } catch (err) {
    if (!(err instanceof InvalidRecordError)) throw err;
    return `invalid: ${err.message} ${JSON.stringify(err.issues)}`;
  }
}
function fast(encoder: ProxyStatusEncoder, status: StreamProxyStatus): string {
  try {
    return encoder.encode(status).toString('utf8');
  } catch (err) {
    if (!(err instanceof InvalidRecordError)) throw err;
    return `invalid: ${err.message} ${JSON.stringify(err.issues)}`;
  }
}

describe('ProxyStatusEncoder', () => {
  it('writes the bytes the schema writes, and refuses what it refuses, as a record changes in place', () => {
    fc.assert(
      fc.property(initial, fc.array(change, { maxLength: 30 }), (start, changes) => {
        const encoder = new ProxyStatusEncoder();
        const status: Mutable = {
          service: start.service,
          nodeId: start.nodeId,
          controlPlane: start.controlPlane,
          stream: `${start.controlPlane}/${start.streamNumber}`,
          connectedAt: start.connectedAt,
          updatedAt: start.updatedAt,
          ...(start.placeholders ? { meshRevision: undefined } : {}),
          types: {},
        };
        expect(fast(encoder, status as unknown as StreamProxyStatus)).toBe(reference(status as unknown as StreamProxyStatus));
        for (const c of changes) {
          apply(status, c);
          expect(fast(encoder, status as unknown as StreamProxyStatus)).toBe(reference(status as unknown as StreamProxyStatus));
        }
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('a writer-shaped record takes the fast path after its first write', () => {
    const encoder = new ProxyStatusEncoder();
    const status: StreamProxyStatus = {
      service: 'a',
      nodeId: 'a-1',
      controlPlane: 'cp',
      stream: 'cp/1',
      connectedAt: '2026-12-06T20:00:00.000Z',
      updatedAt: '2026-12-06T20:00:00.000Z',
      meshRevision: undefined,
      types: {},
    };
    encoder.encode(status);
    const parse = jest.spyOn(ProxyStatus, 'safeParse');
    status.types.cds = { lastSentVersion: '0123456789abcdef', lastAckedVersion: undefined, lastNack: undefined };
    status.meshRevision = '42';
    status.updatedAt = '2026-12-06T20:00:01.000Z';
    expect(encoder.encode(status).toString()).toBe(reference(status));
    expect(parse).toHaveBeenCalledTimes(1); // by the reference only
    parse.mockRestore();
  });
});
