import { directiveValues, executables, parseUnit } from './systemd-unit';

describe('parseUnit', () => {
  const unit = parseUnit(
    [
      '# comment',
      '[Unit]',
      'Description=demo',
      '',
      '[Service]',
      'ExecStartPre=-/usr/bin/curl -o x \\',
      '    http://cp/bootstrap',
      'ExecStart=/usr/bin/node main.js',
      '; another comment',
      'SystemCallFilter=@system-service',
      'SystemCallFilter=~@privileged',
      'Environment=A=b=c',
    ].join('\n'),
  );

  it('groups directives by section and keeps repeated keys in order', () => {
    expect(directiveValues(unit, 'Unit', 'Description')).toEqual(['demo']);
    expect(directiveValues(unit, 'Service', 'SystemCallFilter')).toEqual(['@system-service', '~@privileged']);
  });

  it('joins continuation lines and splits only on the first "="', () => {
    expect(directiveValues(unit, 'Service', 'ExecStartPre')).toEqual(['-/usr/bin/curl -o x http://cp/bootstrap']);
    expect(directiveValues(unit, 'Service', 'Environment')).toEqual(['A=b=c']);
  });

  it('lists the binaries the service executes without exec prefixes', () => {
    expect(executables(unit)).toEqual(['/usr/bin/curl', '/usr/bin/node']);
  });

  it('rejects a directive outside any section', () => {
    expect(() => parseUnit('Foo=bar')).toThrow(/not a unit-file line/);
  });
});
