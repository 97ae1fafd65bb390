import { DenialLog } from './denial-log';

describe('DenialLog', () => {
  it('logs at most N lines per reason per second and reports what it left out', () => {
    const lines: Record<string, unknown>[] = [];
    const logger = {
      info: (fields: Record<string, unknown>) => lines.push(fields),
      isLevelEnabled: () => true,
    } as unknown as ConstructorParameters<typeof DenialLog>[0];
    let now = 0;
    const log = new DenialLog(logger, 2, () => now);
    let built = 0;
    const fields = () => (built++, { source: 'a' });
    for (let i = 0; i < 5; i++) log.denied('undeclared', fields);
    log.denied('no-ingress', () => ({}));
    // Fields are built only for the lines written.
    expect(built).toBe(2);
    expect(lines.map((l) => l['reason'])).toEqual(['undeclared', 'undeclared', 'no-ingress']);
    now = 1000;
    log.denied('undeclared', fields);
    expect(lines[3]).toEqual({ source: 'a', reason: 'undeclared', suppressedSinceLastLine: 3 });
  });

  it('builds nothing when info lines are not written at all', () => {
    const logger = { info: () => undefined, isLevelEnabled: (level: string) => level !== 'info' } as unknown as ConstructorParameters<
      typeof DenialLog
    >[0];
    const log = new DenialLog(logger);
    log.denied('undeclared', () => {
      throw new Error('built while info is off');
    });
  });
});
