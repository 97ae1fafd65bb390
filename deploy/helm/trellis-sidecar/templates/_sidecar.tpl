{{/*
Trellis Envoy sidecar for a workload chart. Call each template with a dict:

  (dict "service" "orders" "appPort" 8080 "sidecar" .Values.trellisSidecar "root" $)

- service: the mesh service name (node.cluster); the pod name becomes node.id.
- root: the chart's root context ($), so nativeSidecar follows the cluster's version (on from
  Kubernetes 1.29; the classic container below that). Without it nativeSidecar defaults to on.
- appPort: the port the application listens on inside the pod (the bootstrap's local-app cluster).
- sidecar: optional overrides of the settings in "trellis-sidecar.settings" below.

An init container (`trellis bootstrap`, the trellis/cli image) fetches this pod's
bootstrap from the control plane into a memory emptyDir; Envoy starts from it and receives every listener, route, cluster, endpoint
and secret over xDS. With authzSecret it first obtains the pod's workload certificate from the mesh CA (the
agent's proof, the service credential) into the trellis-workload volume, then asks authz's mTLS port for the
xDS token with it; the agent container keeps that certificate renewed there, where Envoy reads it over SDS. With nativeSidecar (Kubernetes 1.29+) Envoy runs as a restartable
init container with a startup probe on GET /ready (its listeners loaded), so the
application starts only once the mesh is ready for it, and stops before Envoy.
*/}}

{{/* Defaults, overridden by the caller's "sidecar" dict (values.schema.json describes them). */}}
{{- define "trellis-sidecar.settings" -}}
{{- $defaults := dict
  "controlPlaneUrl" "http://trellis-control-plane.trellis.svc:18080"
  "authzUrl" "http://trellis-authz.trellis.svc:8181"
  "authzMtlsUrl" "https://trellis-authz.trellis.svc:8443"
  "authzSecret" (dict "name" "" "key" "secret")
  "envoyImage" "envoyproxy/envoy:distroless-v1.37.6"
  "bootstrapImage" "trellis/cli:0.1.0"
  "logLevel" "info"
  "nativeSidecar" true
  "readyPort" 15021
  "xdsTokenSecret" ""
  "xdsCaFile" ""
  "resources" (dict "requests" (dict "cpu" "50m" "memory" "64Mi") "limits" (dict "memory" "256Mi"))
  "agent" (dict "enabled" false "image" "trellis/cli:0.1.0" "registryUrl" "http://trellis-registry.trellis.svc:8080" "port" 0 "healthCheck" "" "drainSeconds" 10 "ttlSeconds" 15)
}}
{{- $given := .sidecar | default dict }}
{{- /* mergeOverwrite silently keeps the default map when given a string: refuse it. */}}
{{- if and (hasKey $given "authzSecret") (not (kindIs "map" $given.authzSecret)) }}
{{- fail "trellis-sidecar: authzSecret is a map: {name: <Secret name>, key: <key holding the secret>}" }}
{{- end }}
{{- $settings := mergeOverwrite $defaults $given }}
{{- /* mergeOverwrite never lets false override true: copy the switch as given. */}}
{{- if hasKey $given "nativeSidecar" }}
{{- $_ := set $settings "nativeSidecar" $given.nativeSidecar }}
{{- else if .root }}
{{- /* Restartable init containers (native sidecars) are on by default from Kubernetes 1.29. */}}
{{- $_ := set $settings "nativeSidecar" (semverCompare ">=1.29-0" .root.Capabilities.KubeVersion.Version) }}
{{- end }}
{{- if and (hasKey $given "agent") (hasKey $given.agent "enabled") }}
{{- $_ := set $settings.agent "enabled" $given.agent.enabled }}
{{- end }}
{{- toYaml $settings }}
{{- end }}

{{/* Where Envoy reads the workload certificate (@trellis/mesh-contracts SIDECAR_CERTIFICATE_DIR); the agent writes it there. */}}
{{- define "trellis-sidecar.workloadDir" -}}
/var/run/trellis/workload
{{- end }}

{{/* Where the init container finds its credentials: the layout of systemd's $CREDENTIALS_DIRECTORY. */}}
{{- define "trellis-sidecar.credentialsDir" -}}
/run/trellis-credentials
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
ports:
  - name: trellis-ready
    containerPort: {{ $s.readyPort }}
# GET /ready answers 200 once Envoy is LIVE: its first clusters and listeners from xDS are
# loaded. As a native sidecar, the app container starts only after this probe passes.
startupProbe:
  httpGet:
    path: /ready
    port: trellis-ready
  periodSeconds: 1
  timeoutSeconds: 1
  failureThreshold: 300
readinessProbe:
  httpGet:
    path: /ready
    port: trellis-ready
  periodSeconds: 5
resources:
  {{- toYaml $s.resources | nindent 2 }}
securityContext:
  {{- include "trellis-sidecar.securityContext" . | nindent 2 }}
volumeMounts:
  - name: trellis-envoy-bootstrap
    mountPath: /etc/trellis-envoy
    readOnly: true
  # The workload certificate over path-based SDS: every mesh TLS context names files here.
  - name: trellis-workload
    mountPath: {{ include "trellis-sidecar.workloadDir" . }}
    readOnly: true
{{- end }}

{{/* Init containers: the bootstrap fetch, then (nativeSidecar) Envoy itself. */}}
{{- define "trellis-sidecar.initContainers" -}}
{{- $s := include "trellis-sidecar.settings" . | fromYaml }}
{{- if not .service }}{{ fail "trellis-sidecar: pass the mesh service name as \"service\"" }}{{ end }}
{{- if not .appPort }}{{ fail "trellis-sidecar: pass the application's port as \"appPort\"" }}{{ end -}}
{{- $authz := $s.authzSecret }}
{{- /* The init container's certificate lives 24 h: without the agent nobody renews it, and Envoy's mTLS would stop then. */}}
{{- if and $authz.name (not $s.agent.enabled) }}{{ fail "trellis-sidecar: authzSecret needs agent.enabled: the init container obtains the workload certificate authz's mTLS port and Envoy need, and only the agent keeps it renewed" }}{{ end }}
- name: trellis-bootstrap
  image: {{ $s.bootstrapImage }}
  # `trellis bootstrap`, as VMs run it: fetches this pod's bootstrap (waiting, with
  # backoff, for a control plane that is not up or does not know the service yet) and,
  # when the control plane wants an xDS token, fills one in: fresh from authz's mTLS port
  # (authzSecret), else the static xdsTokenSecret; with neither it stops here. It runs
  # before the agent, so with authzSecret it first obtains the workload certificate itself
  # (--mesh-ca, proven with the service credential as the agent proves itself): a
  # production authz issues tokens only to a caller presenting one.
  args:
    - bootstrap
    - {{ .service | quote }}
    - --out
    - /etc/trellis-envoy/bootstrap.yaml
  env:
    - name: TRELLIS_CONTROL_PLANE_URL
      value: {{ $s.controlPlaneUrl | quote }}
    - name: TRELLIS_APP_PORT
      value: {{ .appPort | quote }}
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: TRELLIS_NODE_ID
      value: $(POD_NAME)
    # The SDS files naming the workload certificate, written before Envoy starts.
    - name: TRELLIS_CERTIFICATE_DIR
      value: {{ include "trellis-sidecar.workloadDir" . }}
    # The Envoy container's startup probe asks GET /ready here.
    - name: TRELLIS_ENVOY_READY_PORT
      value: {{ $s.readyPort | quote }}
    {{- with $s.xdsCaFile }}
    # xDS over TLS: the CA of the control plane's serving certificate, as Envoy sees it; with a control
    # plane that requires client certificates, Envoy presents the workload certificate (SDS) instead of a token.
    - name: TRELLIS_XDS_CA_FILE
      value: {{ . | quote }}
    {{- end }}
    {{- if $authz.name }}
    # The mesh CA (authz's HTTP port): the first workload certificate, into trellis-workload.
    - name: TRELLIS_MESH_CA_URL
      value: {{ $s.authzUrl | quote }}
    # authz's mTLS port: the xDS token, asked with that certificate (authz takes the service from it).
    - name: TRELLIS_AUTHZ_URL
      value: {{ $s.authzMtlsUrl | quote }}
    - name: TRELLIS_SERVICE_SECRET_FILE
      value: {{ printf "%s/authz-secret" (include "trellis-sidecar.credentialsDir" .) | quote }}
    {{- end }}
    {{- if or $authz.name $s.xdsTokenSecret }}
    - name: CREDENTIALS_DIRECTORY
      value: {{ include "trellis-sidecar.credentialsDir" . }}
    {{- end }}
  resources:
    requests: { cpu: 10m, memory: 32Mi }
    limits: { memory: 128Mi }
  securityContext:
    {{- include "trellis-sidecar.securityContext" . | nindent 4 }}
  volumeMounts:
    - name: trellis-envoy-bootstrap
      mountPath: /etc/trellis-envoy
    - name: trellis-workload
      mountPath: {{ include "trellis-sidecar.workloadDir" . }}
    {{- if or $authz.name $s.xdsTokenSecret }}
    - name: trellis-credentials
      mountPath: {{ include "trellis-sidecar.credentialsDir" . }}
      readOnly: true
    {{- end }}
{{- if $s.nativeSidecar }}
- restartPolicy: Always
  {{- include "trellis-sidecar.envoy" . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The trellis agent (apps/cli, `trellis agent`), a regular container: on pod termination it
gets SIGTERM at once and drains the instance — the control plane sends it as EDS
DRAINING, so no new calls arrive — then deregisters. The app keeps serving meanwhile
because its preStop (trellis-sidecar.appLifecycle) waits drainSeconds + 2 s; Envoy, a
native sidecar, stops only after both.
*/}}
{{- define "trellis-sidecar.agent" -}}
{{- $s := include "trellis-sidecar.settings" . | fromYaml -}}
{{- $a := $s.agent -}}
{{- if not $s.authzSecret.name }}{{ fail "trellis-sidecar: agent.enabled needs authzSecret, the service's credential the agent registers with" }}{{ end -}}
name: trellis-agent
image: {{ $a.image }}
args: [agent]
env:
  - { name: TRELLIS_SERVICE, value: {{ .service | quote }} }
  - name: TRELLIS_INSTANCE_ID
    valueFrom: { fieldRef: { fieldPath: metadata.name } }
  - name: TRELLIS_ADDRESS
    valueFrom: { fieldRef: { fieldPath: status.podIP } }
  - { name: TRELLIS_PORT, value: {{ (ternary .appPort $a.port (eq (int $a.port) 0)) | quote }} }
  - { name: TRELLIS_PLATFORM, value: k8s }
  # Kubernetes 1.33+ copies the node's zone label onto the pod; empty before that.
  - name: TRELLIS_ZONE
    valueFrom: { fieldRef: { fieldPath: "metadata.labels['topology.kubernetes.io/zone']" } }
  - name: TRELLIS_SUB_ZONE
    valueFrom: { fieldRef: { fieldPath: spec.nodeName } }
  - { name: TRELLIS_REGISTRY_URL, value: {{ $a.registryUrl | quote }} }
  - { name: TRELLIS_HEALTH_CHECK, value: {{ $a.healthCheck | default (printf "tcp://127.0.0.1:%v" .appPort) | quote }} }
  - { name: TRELLIS_DRAIN, value: {{ printf "%vs" $a.drainSeconds | quote }} }
  - { name: TRELLIS_TTL_SECONDS, value: {{ $a.ttlSeconds | quote }} }
  - { name: TRELLIS_SERVICE_SECRET_FILE, value: {{ printf "%s/authz-secret" (include "trellis-sidecar.credentialsDir" .) | quote }} }
  # The workload certificate from the mesh CA (proven with the service credential), kept renewed where Envoy reads it.
  - { name: TRELLIS_AUTHZ_URL, value: {{ $s.authzUrl | quote }} }
  - { name: TRELLIS_CERTIFICATE_DIR, value: {{ include "trellis-sidecar.workloadDir" . }} }
ports:
  - { name: trellis-agent, containerPort: 15020 }
readinessProbe:
  httpGet: { path: /readyz, port: trellis-agent }
livenessProbe:
  httpGet: { path: /healthz, port: trellis-agent }
resources:
  requests: { cpu: 10m, memory: 48Mi }
  limits: { memory: 128Mi }
securityContext:
  {{- include "trellis-sidecar.securityContext" . | nindent 2 }}
volumeMounts:
  - name: trellis-credentials
    mountPath: {{ include "trellis-sidecar.credentialsDir" . }}
    readOnly: true
  - name: trellis-workload
    mountPath: {{ include "trellis-sidecar.workloadDir" . }}
{{- end }}

{{/*
For the app container's `lifecycle:` when the agent runs: the app keeps serving while the
agent drains the instance. Set terminationGracePeriodSeconds above drainSeconds + 2.
*/}}
{{- define "trellis-sidecar.appLifecycle" -}}
{{- $s := include "trellis-sidecar.settings" . | fromYaml -}}
{{- if $s.agent.enabled -}}
preStop:
  sleep:
    seconds: {{ add (int $s.agent.drainSeconds) 2 }}
{{- end }}
{{- end }}

{{/* Regular containers: the agent, and Envoy only without nativeSidecar (Kubernetes before 1.29). */}}
{{- define "trellis-sidecar.containers" -}}
{{- $s := include "trellis-sidecar.settings" . | fromYaml -}}
{{- if $s.agent.enabled }}
- {{- include "trellis-sidecar.agent" . | nindent 2 }}
{{- end }}
{{- if not $s.nativeSidecar }}
- {{- include "trellis-sidecar.envoy" . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "trellis-sidecar.volumes" -}}
{{- $s := include "trellis-sidecar.settings" . | fromYaml -}}
- name: trellis-envoy-bootstrap
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
# The workload certificate (the init container obtains the first, the agent renews it) and the SDS files naming it.
- name: trellis-workload
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- if or $s.authzSecret.name $s.xdsTokenSecret }}
# The init container (and the agent) mount these, under the names they read.
- name: trellis-credentials
  projected:
    sources:
      {{- with $s.authzSecret.name }}
      - secret:
          name: {{ . }}
          items:
            - key: {{ $s.authzSecret.key }}
              path: authz-secret
      {{- end }}
      {{- with $s.xdsTokenSecret }}
      - secret:
          name: {{ . }}
          items:
            - key: token
              path: xds-token
      {{- end }}
{{- end }}
{{- end }}
