import type { HistoryEntry, Versioned } from '@trellis/mesh-schema';
import { findNackCause } from './nack-cause';

const change = (service: string, generation: number, modRevision: string, at: string): Versioned<HistoryEntry> => ({
  value: { service, generation, action: generation === 1 ? 'create' : 'update', actor: `${service}-owner`, at, spec: null },
  modRevision,
  createRevision: modRevision,
});

// Revisions are compared as numbers ('9' < '10'); times disagree with revisions on purpose
// (a clock that ran behind) so each test shows which one decided.
const changes = [
  change('web', 1, '5', '2026-11-27T10:00:00.000Z'),
  change('api', 1, '9', '2026-11-27T10:05:00.000Z'),
  change('web', 2, '10', '2026-11-27T10:01:00.000Z'),
  change('api', 2, '12', '2026-11-27T10:10:00.000Z'),
];

describe('findNackCause', () => {
  it('picks the newest change at or below the rejected config’s mesh revision', () => {
    const nack = { version: 'v', error: 'e', at: '2026-11-27T12:00:00.000Z' };
    expect(findNackCause(changes, { ...nack, meshRevision: '11' })).toEqual({
      basis: 'revision',
      change: changes[2]!.value,
      meshRevision: '11',
    });
    expect(findNackCause(changes, { ...nack, meshRevision: '12' })?.change).toBe(changes[3]!.value);
    expect(findNackCause(changes, { ...nack, meshRevision: '9' })?.change).toBe(changes[1]!.value);
  });

  it('names no change when every change is newer than the rejected config', () => {
    expect(findNackCause(changes, { version: 'v', error: 'e', at: '2026-11-27T12:00:00.000Z', meshRevision: '4' })).toBeUndefined();
  });

  it('falls back to the newest change before the rejection time for records without a revision', () => {
    expect(findNackCause(changes, { version: 'v', error: 'e', at: '2026-11-27T10:06:00.000Z' })).toEqual({
      basis: 'time',
      change: changes[1]!.value,
    });
    expect(findNackCause(changes, { version: 'v', error: 'e', at: '2026-11-27T09:00:00.000Z' })).toBeUndefined();
  });
});
