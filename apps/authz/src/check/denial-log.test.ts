import { DenialLog } from './denial-log';

describe('DenialLog', () => {
  it('logs at most N lines per reason per second and reports what it left out', () => {
    const lines: Record<string, unknown>[] = [];
    const logger = { info: (fields: Record<string, unknown>) => lines.push(fields) } as unknown as ConstructorParameters<
      typeof DenialLog
    >[0];
    let now = 0;
    const log = new DenialLog(logger, 2, () => now);
    for (let i = 0; i < 5; i++) log.denied('undeclared', { source: 'a' });
    log.denied('no-ingress', {});
    expect(lines.map((l) => l['reason'])).toEqual(['undeclared', 'undeclared', 'no-ingress']);
    now = 1000;
    log.denied('undeclared', { source: 'a' });
    expect(lines[3]).toEqual({ source: 'a', reason: 'undeclared', suppressedSinceLastLine: 3 });
  });
});
