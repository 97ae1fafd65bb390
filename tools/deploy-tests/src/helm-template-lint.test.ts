import { actions, lintTemplates } from './helm-template-lint';

const values = { image: { repository: 'r', tag: '' }, podAnnotations: {}, extra: null, maxBytes: 65536 };

describe('actions', () => {
  it('strips trim markers and skips comments', () => {
    expect(actions('a {{- if .X -}} b {{/* note */}} {{ end }}')).toEqual(['if .X', 'end']);
  });
});

describe('lintTemplates', () => {
  it('accepts a balanced template whose includes and values exist', () => {
    const files = {
      '_helpers.tpl': '{{- define "c.name" -}}{{ .Values.image.repository }}{{- end }}',
      'deploy.yaml':
        'image: {{ include "c.name" . }}:{{ .Values.image.tag }}\n{{- with .Values.podAnnotations.anything }}x{{ end }}{{ $.Values.extra.deep }}',
    };
    expect(lintTemplates(files, values)).toEqual([]);
  });

  it('reports unbalanced blocks, unknown includes and values typos', () => {
    const files = {
      'a.yaml': '{{- if .Values.image.tagg }}{{ include "missing" . }}',
      'b.yaml': '{{ end }}{{ .Values.image.tag.more }}',
      'c.yaml': 'oops {{ .Values.image',
    };
    expect(lintTemplates(files, values).map((p) => `${p.file}: ${p.message}`)).toEqual([
      expect.stringMatching(/^c\.yaml: unclosed "\{\{"/),
      'a.yaml: .Values.image.tagg: values.yaml has no "image.tagg"',
      'a.yaml: includes "missing", which no template defines',
      'a.yaml: 1 block(s) not closed with "end"',
      'b.yaml: an "end" closes no block',
      'b.yaml: .Values.image.tag.more: "image.tag" is not a map in values.yaml',
    ]);
  });

  it('reports a whole number quoted without int64, which Helm would render as 1e+06 from 1000000 up', () => {
    const files = {
      'env.yaml':
        'a: {{ .Values.maxBytes | quote }}\nb: {{ .Values.maxBytes | int64 | quote }}\nf: {{ .Values.maxBytes | float64 | quote }}\nc: {{ .Values.image.tag | quote }}',
    };
    expect(lintTemplates(files, values).map((p) => `${p.file}: ${p.message}`)).toEqual([
      'env.yaml: .Values.maxBytes: a whole number quoted without "| int64" (Helm holds it as a float: 1000000 renders "1e+06")',
    ]);
  });
});
