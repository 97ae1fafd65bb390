import { packAny } from '@trellis/envoy-types';
import { StdoutAccessLog } from '@trellis/envoy-types/envoy/extensions/access_loggers/stream/v3/stream';
import { propertyRuns } from '@trellis/mesh-schema/testing';
import fc from 'fast-check';
import { ACCESS_LOG_FIELDS, stdoutJsonAccessLog } from './common';

describe('stdoutJsonAccessLog', () => {
  // The reference: the whole StdoutAccessLog encoded the plain way, tags first.
  const plain = (tags: Record<string, string>) =>
    packAny(
      StdoutAccessLog,
      StdoutAccessLog.fromPartial({
        accessLogFormat: { $case: 'logFormat', value: { format: { $case: 'jsonFormat', value: { ...tags, ...ACCESS_LOG_FIELDS } } } },
      }),
    );

  it('encodes exactly what encoding the whole message gives', () => {
    const tagName = fc.string({ minLength: 1, maxLength: 20 }).filter((k) => !(k in ACCESS_LOG_FIELDS) && k !== '__proto__');
    fc.assert(
      fc.property(fc.dictionary(tagName, fc.string({ maxLength: 300 }), { maxKeys: 4 }), (tags) => {
        const made = stdoutJsonAccessLog(tags);
        expect(made.configType?.$case).toBe('typedConfig');
        const any = made.configType!.value;
        const reference = plain(tags);
        expect(any.typeUrl).toBe(reference.typeUrl);
        expect(Buffer.from(any.value).equals(Buffer.from(reference.value))).toBe(true);
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('decodes to the tags and every field', () => {
    const any = stdoutJsonAccessLog({ trellis_direction: 'inbound', trellis_service: 'a' }).configType!.value;
    const decoded = StdoutAccessLog.decode(any.value);
    expect(decoded.accessLogFormat?.value.format).toEqual({
      $case: 'jsonFormat',
      value: { trellis_direction: 'inbound', trellis_service: 'a', ...ACCESS_LOG_FIELDS },
    });
  });

  it('refuses a tag that would shadow a field', () => {
    expect(() => stdoutJsonAccessLog({ method: 'x' })).toThrow(/field name/);
  });
});
