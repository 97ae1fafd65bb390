import { createLogger } from '@trellis/runtime';
import { StreamLog } from './stream-log';

interface Line {
  level: number;
  msg: string;
  [field: string]: unknown;
}

const INFO = 30;
const DEBUG = 20;

/** A StreamLog over a real pino logger at `level`, its lines parsed. */
function streamLog(level: string, options = { windowMs: 10_000, infoLinesPerWindow: 3 }) {
  const lines: Line[] = [];
  const logger = createLogger('control-plane', level, { write: (line: string) => lines.push(JSON.parse(line) as Line) });
  return { log: new StreamLog(logger, options), lines };
}

describe('StreamLog', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('logs each stream at info while a few come and go, and no summary', () => {
    const { log, lines } = streamLog('info');
    log.opened(() => ({ nodeId: 'a-1', service: 'a', requestId: 'r1' }));
    log.closed(() => ({ nodeId: 'a-1', service: 'a', requestId: 'r1' }));
    jest.advanceTimersByTime(10_000);
    expect(lines.map((l) => [l.level, l.msg, l['nodeId'], l['requestId']])).toEqual([
      [INFO, 'xds stream opened', 'a-1', 'r1'],
      [INFO, 'xds stream closed', 'a-1', 'r1'],
    ]);
  });

  it('in a storm logs the first streams at info, the rest at debug, then one line with the counts', () => {
    const { log, lines } = streamLog('debug');
    for (let i = 0; i < 5000; i++) log.opened(() => ({ nodeId: `s-${i}` }));
    for (let i = 0; i < 20; i++) log.closed(() => ({ nodeId: `s-${i}` }));
    expect(lines.filter((l) => l.level === INFO).map((l) => l['nodeId'])).toEqual(['s-0', 's-1', 's-2']);
    expect(lines.filter((l) => l.level === DEBUG)).toHaveLength(5000 + 20 - 3);
    jest.advanceTimersByTime(10_000);
    const summary = lines.at(-1)!;
    expect(summary).toEqual(
      expect.objectContaining({
        level: INFO,
        msg: 'xds streams opened and closed (more than the info lines said)',
        opened: 5000,
        closed: 20,
      }),
    );
    expect(summary['linesAtDebug']).toBe(5017);
    expect(summary['seconds']).toBe(10);
  });

  it('builds no per-stream fields for lines nobody reads, and starts a fresh budget each window', () => {
    const { log, lines } = streamLog('info');
    let built = 0;
    const fields = () => ({ n: ++built });
    for (let i = 0; i < 100; i++) log.opened(fields);
    expect(built).toBe(3);
    jest.advanceTimersByTime(10_000);
    expect(lines.filter((l) => l.msg === 'xds stream opened')).toHaveLength(3);
    log.closed(fields);
    expect(lines.at(-1)).toEqual(expect.objectContaining({ level: INFO, msg: 'xds stream closed', n: 4 }));
  });

  it('writes the open window at shutdown', () => {
    const { log, lines } = streamLog('info');
    for (let i = 0; i < 10; i++) log.opened(() => ({}));
    jest.advanceTimersByTime(2_500);
    log.flush();
    expect(lines.at(-1)).toEqual(expect.objectContaining({ opened: 10, closed: 0, linesAtDebug: 7, seconds: 2.5 }));
    jest.advanceTimersByTime(10_000);
    expect(lines.filter((l) => l['opened'] !== undefined)).toHaveLength(1);
  });
});
