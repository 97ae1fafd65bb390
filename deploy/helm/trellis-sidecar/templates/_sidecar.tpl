{{/*
Trellis Envoy sidecar for a workload chart. Call each template with a dict:

  (dict "service" "orders" "appPort" 8080 "sidecar" .Values.trellisSidecar)

- service: the mesh service name (node.cluster); the pod name becomes node.id.
- appPort: the port the application listens on inside the pod (the bootstrap's local-app cluster).
- sidecar: optional overrides of the settings in "trellis-sidecar.settings" below.

An init container fetches this pod's bootstrap from the control plane into a memory
emptyDir; Envoy starts from it and receives every listener, route, cluster, endpoint
and secret over xDS. With nativeSidecar (Kubernetes 1.29+) Envoy runs as a restartable
init container, so it is up before the application starts and stops after it.
*/}}

{{/* Defaults, overridden by the caller's "sidecar" dict. */}}
{{- define "trellis-sidecar.settings" -}}
{{- $defaults := dict
  "controlPlaneUrl" "http://trellis-control-plane.trellis.svc:18080"
  "envoyImage" "envoyproxy/envoy:distroless-v1.32.3"
  "bootstrapImage" "curlimages/curl:8.11.1"
  "logLevel" "info"
  "nativeSidecar" true
  "xdsTokenSecret" ""
  "resources" (dict "requests" (dict "cpu" "50m" "memory" "64Mi") "limits" (dict "memory" "256Mi"))
}}
{{- $given := .sidecar | default dict }}
{{- $settings := mergeOverwrite $defaults $given }}
{{- /* mergeOverwrite never lets false override true: copy the switch as given. */}}
{{- if hasKey $given "nativeSidecar" }}
{{- $_ := set $settings "nativeSidecar" $given.nativeSidecar }}
{{- end }}
{{- toYaml $settings }}
{{- end }}

{{- define "trellis-sidecar.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "trellis-sidecar.envoy" -}}
{{- $s := include "trellis-sidecar.settings" . | fromYaml -}}
name: envoy
image: {{ $s.envoyImage }}
args:
  - --config-path
  - /etc/trellis-envoy/bootstrap.yaml
  - --log-level
  - {{ $s.logLevel }}
  # One Envoy per pod: no hot-restart shared memory needed.
  - --disable-hot-restart
resources:
  {{- toYaml $s.resources | nindent 2 }}
securityContext:
  {{- include "trellis-sidecar.securityContext" . | nindent 2 }}
volumeMounts:
  - name: trellis-envoy-bootstrap
    mountPath: /etc/trellis-envoy
    readOnly: true
{{- end }}

{{/* Init containers: the bootstrap fetch, then (nativeSidecar) Envoy itself. */}}
{{- define "trellis-sidecar.initContainers" -}}
{{- $s := include "trellis-sidecar.settings" . | fromYaml }}
{{- if not .service }}{{ fail "trellis-sidecar: pass the mesh service name as \"service\"" }}{{ end }}
{{- if not .appPort }}{{ fail "trellis-sidecar: pass the application's port as \"appPort\"" }}{{ end -}}
- name: trellis-bootstrap
  image: {{ $s.bootstrapImage }}
  # Fetch this pod's bootstrap; when the control plane wants an xDS token, the bootstrap
  # carries a ${TRELLIS_XDS_TOKEN} placeholder, filled from xdsTokenSecret or refused here.
  command:
    - /bin/sh
    - -ec
    - |
      url="$TRELLIS_CONTROL_PLANE_URL/bootstrap/$TRELLIS_SERVICE?node=$POD_NAME&app_port=$TRELLIS_APP_PORT"
      curl --fail-with-body --silent --show-error --retry 30 --retry-connrefused --retry-delay 2 --max-time 10 \
        --output /etc/trellis-envoy/bootstrap.tmp "$url" || { cat /etc/trellis-envoy/bootstrap.tmp >&2; exit 1; }
      if grep -q '${TRELLIS_XDS_TOKEN}' /etc/trellis-envoy/bootstrap.tmp; then
        [ -n "${TRELLIS_XDS_TOKEN:-}" ] || { echo "the control plane requires an xDS token: set xdsTokenSecret" >&2; exit 1; }
        sed "s|\${TRELLIS_XDS_TOKEN}|$TRELLIS_XDS_TOKEN|g" /etc/trellis-envoy/bootstrap.tmp > /etc/trellis-envoy/bootstrap.yaml
      else
        mv /etc/trellis-envoy/bootstrap.tmp /etc/trellis-envoy/bootstrap.yaml
      fi
      rm -f /etc/trellis-envoy/bootstrap.tmp
  env:
    - name: TRELLIS_CONTROL_PLANE_URL
      value: {{ $s.controlPlaneUrl | quote }}
    - name: TRELLIS_SERVICE
      value: {{ .service | quote }}
    - name: TRELLIS_APP_PORT
      value: {{ .appPort | quote }}
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    {{- with $s.xdsTokenSecret }}
    - name: TRELLIS_XDS_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: token
    {{- end }}
  resources:
    requests: { cpu: 10m, memory: 16Mi }
    limits: { memory: 32Mi }
  securityContext:
    {{- include "trellis-sidecar.securityContext" . | nindent 4 }}
  volumeMounts:
    - name: trellis-envoy-bootstrap
      mountPath: /etc/trellis-envoy
{{- if $s.nativeSidecar }}
- restartPolicy: Always
  {{- include "trellis-sidecar.envoy" . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Regular containers: Envoy here only without nativeSidecar (Kubernetes before 1.29). */}}
{{- define "trellis-sidecar.containers" -}}
{{- $s := include "trellis-sidecar.settings" . | fromYaml -}}
{{- if not $s.nativeSidecar -}}
- {{- include "trellis-sidecar.envoy" . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "trellis-sidecar.volumes" -}}
- name: trellis-envoy-bootstrap
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}
