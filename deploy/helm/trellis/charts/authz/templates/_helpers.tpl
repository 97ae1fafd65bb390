{{/*
Named templates are global across the umbrella chart and its subcharts, so every
name here starts with "trellis-authz.".
*/}}

{{/* The chart name. */}}
{{- define "trellis-authz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name: <release>-authz, or the release name if it already contains it. */}}
{{- define "trellis-authz.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "trellis-authz.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trellis-authz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trellis-authz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "trellis-authz.labels" -}}
helm.sh/chart: {{ include "trellis-authz.chart" . }}
{{ include "trellis-authz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: authz
app.kubernetes.io/part-of: trellis
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "trellis-authz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "trellis-authz.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository[:tag][@digest], with global.imageRegistry in front when set. */}}
{{- define "trellis-authz.image" -}}
{{- $imageRegistry := (.Values.global).imageRegistry | default "" }}
{{- $repository := ternary (printf "%s/%s" $imageRegistry .Values.image.repository) .Values.image.repository (ne $imageRegistry "") }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
etcd settings: this chart's `etcd` values, falling back to `global.etcd`, then to
the defaults every Trellis app uses. Rendered as YAML; read with fromYaml.
*/}}
{{- define "trellis-authz.etcd" -}}
{{- $global := (.Values.global).etcd | default dict }}
{{- $local := .Values.etcd | default dict }}
endpoints: {{ $local.endpoints | default $global.endpoints | default (list "http://etcd:2379") | toJson }}
prefix: {{ $local.prefix | default $global.prefix | default "/trellis/" | quote }}
tlsSecret: {{ dig "tls" "existingSecret" "" $local | default (dig "tls" "existingSecret" "" $global) | quote }}
username: {{ dig "auth" "username" "" $local | default (dig "auth" "username" "" $global) | quote }}
passwordSecret: {{ dig "auth" "existingSecret" "" $local | default (dig "auth" "existingSecret" "" $global) | quote }}
passwordKey: {{ dig "auth" "passwordKey" "" $local | default (dig "auth" "passwordKey" "" $global) | default "password" | quote }}
{{- end }}

{{/* The etcd environment variables (TLS and password files under /etc/trellis/etcd-*). */}}
{{- define "trellis-authz.etcdEnv" -}}
{{- $etcd := include "trellis-authz.etcd" . | fromYaml }}
- name: TRELLIS_ETCD_ENDPOINTS
  value: {{ join "," $etcd.endpoints | quote }}
- name: TRELLIS_ETCD_PREFIX
  value: {{ $etcd.prefix | quote }}
{{- if $etcd.tlsSecret }}
- name: TRELLIS_ETCD_CA_FILE
  value: /etc/trellis/etcd-tls/ca.crt
- name: TRELLIS_ETCD_CERT_FILE
  value: /etc/trellis/etcd-tls/tls.crt
- name: TRELLIS_ETCD_KEY_FILE
  value: /etc/trellis/etcd-tls/tls.key
{{- end }}
{{- if $etcd.username }}
- name: TRELLIS_ETCD_USERNAME
  value: {{ $etcd.username | quote }}
{{- end }}
{{- if $etcd.passwordSecret }}
- name: TRELLIS_ETCD_PASSWORD_FILE
  value: /etc/trellis/etcd-auth/password
{{- end }}
{{- end }}

{{- define "trellis-authz.etcdVolumeMounts" -}}
{{- $etcd := include "trellis-authz.etcd" . | fromYaml }}
{{- if $etcd.tlsSecret }}
- name: etcd-tls
  mountPath: /etc/trellis/etcd-tls
  readOnly: true
{{- end }}
{{- if $etcd.passwordSecret }}
- name: etcd-auth
  mountPath: /etc/trellis/etcd-auth
  readOnly: true
{{- end }}
{{- end }}

{{- define "trellis-authz.etcdVolumes" -}}
{{- $etcd := include "trellis-authz.etcd" . | fromYaml }}
{{- if $etcd.tlsSecret }}
- name: etcd-tls
  secret:
    secretName: {{ $etcd.tlsSecret }}
    defaultMode: 0440
    items:
      - { key: ca.crt, path: ca.crt }
      - { key: tls.crt, path: tls.crt }
      - { key: tls.key, path: tls.key }
{{- end }}
{{- if $etcd.passwordSecret }}
- name: etcd-auth
  secret:
    secretName: {{ $etcd.passwordSecret }}
    defaultMode: 0440
    items:
      - key: {{ $etcd.passwordKey }}
        path: password
{{- end }}
{{- end }}

{{/* The Secret holding the PEM signing keys: the user's, or the one this chart generates. */}}
{{- define "trellis-authz.signingKeysSecretName" -}}
{{- default (printf "%s-signing-keys" (include "trellis-authz.fullname" .)) .Values.signingKeys.existingSecret }}
{{- end }}

{{/*
authz verifies every caller's client certificate against the mesh CA and refuses to start
without one: fail at render time, naming the value, instead of a crash-looping pod. The chart
never generates a CA (docs/security.md: the operator's PKI owns the root).
*/}}
{{- define "trellis-authz.requireCa" -}}
{{- if and (not .Values.ca.existingSecret) (not .Values.allowInsecureCallers) -}}
{{- fail "trellis-authz: set ca.existingSecret (authz.ca.existingSecret in the umbrella chart): a Secret with tls.crt and tls.key, the root or intermediate your PKI issues for the mesh (and trustBundleKey for an intermediate's roots). authz requires client certificates and verifies them against this CA; the chart never generates one. allowInsecureCallers=true is for local development only." -}}
{{- end -}}
{{- if and .Values.contour.enabled (not .Values.tls.existingSecret) -}}
{{- fail "trellis-authz: contour.enabled needs tls.existingSecret: authz's serving certificate from the mesh CA with the URI SAN spiffe://<trustDomain>/trellis/authz and the DNS SAN in contour.validation.subjectName (Contour validates only DNS SANs; authz's self-issued certificate has none)" -}}
{{- end -}}
{{- end }}

{{/*
Limits on the wire (values `limits`): the HTTP and mTLS ports' request deadlines, the gRPC and mTLS ports'
TLS deadlines and pending-connection cap, and the gRPC port's connection idle and age limits. Whole numbers are printed as such
(a large one would otherwise reach the app as 1.8e+06, which it refuses).
*/}}
{{- define "trellis-authz.limitsEnv" -}}
{{- with .Values.limits }}
- name: TRELLIS_HTTP_HEADERS_TIMEOUT_MS
  value: {{ .http.headersTimeoutMs | int64 | quote }}
- name: TRELLIS_HTTP_REQUEST_TIMEOUT_MS
  value: {{ .http.requestTimeoutMs | int64 | quote }}
- name: TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS
  value: {{ .tls.handshakeTimeoutMs | int64 | quote }}
- name: TRELLIS_HTTP2_PREFACE_TIMEOUT_MS
  value: {{ .tls.http2PrefaceTimeoutMs | int64 | quote }}
- name: TRELLIS_TLS_MAX_PENDING_CONNECTIONS
  value: {{ .tls.maxPendingConnections | int64 | quote }}
- name: TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS
  value: {{ .grpc.maxConnectionIdleMs | int64 | quote }}
- name: TRELLIS_GRPC_MAX_CONNECTION_AGE_MS
  value: {{ .grpc.maxConnectionAgeMs | int64 | quote }}
- name: TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS
  value: {{ .grpc.maxConnectionAgeGraceMs | int64 | quote }}
- name: TRELLIS_GRPC_LISTEN_BACKLOG
  value: {{ .grpc.listenBacklog | int64 | quote }}
{{- end }}
{{- end }}
