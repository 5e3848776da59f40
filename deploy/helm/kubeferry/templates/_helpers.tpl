{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "kubeferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name: <release>-kubeferry, or the release name if it contains "kubeferry". */}}
{{- define "kubeferry.fullname" -}}
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

{{- define "kubeferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubeferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kubeferry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kubeferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kubeferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubeferry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubeferry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Namespaces that get a Role, as a list; empty means cluster-wide (ClusterRole). Sidecars watch
only their own namespace unless told otherwise.
*/}}
{{- define "kubeferry.roleNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- toJson (uniq .Values.watchNamespaces) }}
{{- else if eq .Values.mode "sidecar" }}
{{- toJson (list .Release.Namespace) }}
{{- else }}
{{- toJson (list) }}
{{- end }}
{{- end }}

{{/*
The one list of permissions, shared by the ClusterRole and the Roles. The controller reads
Services and their EndpointSlices, and reports problems as Events on the Services (core/v1
Events; events.k8s.io is the same object under its newer API group). In ingress mode it also
reads the Secrets that Services name in kubeferry.io/tls-secret: get/list/watch, which RBAC
cannot narrow by name; the controller lists and watches each of those Secrets alone (a field
selector on its name), never every Secret of a namespace. Sidecars serve no TLS: no Secrets.
*/}}
{{- define "kubeferry.rbacRules" -}}
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch"]
{{- if eq .Values.mode "ingress" }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
{{- end }}
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* config.timeouts.drain_seconds, as the proxy defaults it. */}}
{{- define "kubeferry.drainSeconds" -}}
{{- $timeouts := default dict .Values.config.timeouts }}
{{- $drain := 30.0 }}
{{- if hasKey $timeouts "drain_seconds" }}{{ $drain = $timeouts.drain_seconds }}{{ end }}
{{- float64 $drain }}
{{- end }}

{{/* Long enough for the preStop sleep and the drain, so the kubelet never cuts a drain short. */}}
{{- define "kubeferry.terminationGracePeriodSeconds" -}}
{{- $needed := addf (include "kubeferry.drainSeconds" . | float64) .Values.preStopSleepSeconds }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- addf $needed 10 | ceil | int }}
{{- else if le (float64 .Values.terminationGracePeriodSeconds) $needed }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.timeouts.drain_seconds + preStopSleepSeconds (%v), or SIGKILL cuts the drain short" .Values.terminationGracePeriodSeconds $needed) }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds | int }}
{{- end }}
{{- end }}

{{/*
The pods' selector labels as key=value,... for --gateway-service-selector: the controller gives
each Gateway's Service this selector, so a Gateway's address reaches these very pods.
*/}}
{{- define "kubeferry.selectorString" -}}
{{- $labels := include "kubeferry.selectorLabels" . | fromYaml }}
{{- $pairs := list }}
{{- range $key := keys $labels | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%s" $key (get $labels $key)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/*
gatewayAPI.portRange, checked as the controller checks it (it would exit with status 2): ports
1-65535, the first not above the last, and none of the pods' own listening ports inside.
*/}}
{{- define "kubeferry.gatewayPortRange" -}}
{{- $range := .Values.gatewayAPI.portRange }}
{{- $parts := splitList "-" $range }}
{{- $low := index $parts 0 | int }}
{{- $high := index $parts 1 | int }}
{{- if or (lt $low 1) (gt $high 65535) (gt $low $high) }}
{{- fail (printf "gatewayAPI.portRange %s: ports must be 1-65535, the first not above the last" $range) }}
{{- end }}
{{- range $name, $port := dict "ports.http" .Values.ports.http "ports.https" .Values.ports.https "ports.admin" .Values.ports.admin }}
{{- if and $port (le $low (int $port)) (le (int $port) $high) }}
{{- fail (printf "gatewayAPI.portRange %s contains %s (%v)" $range $name $port) }}
{{- end }}
{{- end }}
{{- $range }}
{{- end }}
