import { actions, lintTemplates } from './helm-template-lint';

const values = { image: { repository: 'r', tag: '' }, podAnnotations: {}, extra: null };

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
});
