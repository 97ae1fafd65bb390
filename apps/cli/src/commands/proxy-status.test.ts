import { proxyRows, syncState } from './proxy-status';

const now = Date.parse('2026-12-06T10:00:00Z');
const at = (secondsAgo: number) => new Date(now - secondsAgo * 1000).toISOString();

describe('syncState', () => {
  it('is SYNCED when what was sent is ACKed, even after an older NACK', () => {
    expect(syncState({ lastSentVersion: '2', lastAckedVersion: '2' }, at(60), now, 10_000)).toBe('SYNCED');
    expect(
      syncState({ lastSentVersion: '3', lastAckedVersion: '3', lastNack: { version: '2', error: 'old', at: at(90) } }, at(60), now, 10_000),
    ).toBe('SYNCED');
  });

  it('is NACKED when the NACK names the version sent or, as xDS NACKs do, the last one accepted', () => {
    const nack = (version: string) => ({ version, error: 'bad', at: at(1) });
    expect(syncState({ lastSentVersion: '3', lastAckedVersion: '2', lastNack: nack('3') }, at(1), now, 10_000)).toBe('NACKED');
    expect(syncState({ lastSentVersion: '3', lastAckedVersion: '2', lastNack: nack('2') }, at(1), now, 10_000)).toBe('NACKED');
    expect(syncState({ lastSentVersion: '1', lastNack: nack('') }, at(1), now, 10_000)).toBe('NACKED');
  });

  it('is STALE when sent and not answered for longer than the limit, SENT before that', () => {
    expect(syncState({ lastSentVersion: '3', lastAckedVersion: '2' }, at(30), now, 10_000)).toBe('STALE');
    expect(syncState({ lastSentVersion: '3', lastAckedVersion: '2' }, at(2), now, 10_000)).toBe('SENT');
    expect(syncState(undefined, at(2), now, 10_000)).toBe('NOT SENT');
  });

  it('lists each NACKED type with its error', () => {
    const [row] = proxyRows(
      [
        {
          service: 'a',
          nodeId: 'a-1',
          controlPlane: 'cp-0',
          connectedAt: at(100),
          updatedAt: at(1),
          types: {
            cds: { lastSentVersion: '2', lastAckedVersion: '1', lastNack: { version: '1', error: 'unknown field', at: at(1) } },
            lds: { lastSentVersion: '1', lastAckedVersion: '1' },
          },
        },
      ],
      now,
      10_000,
    );
    expect(row!.states).toMatchObject({ cds: 'NACKED', lds: 'SYNCED', eds: 'NOT SENT' });
    expect(row!.nacks).toEqual(['CDS: unknown field']);
  });
});
