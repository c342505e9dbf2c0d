{{/*
Base name of every object: fullnameOverride, else the release name if it contains "gpupool",
else <release>-gpupool.
*/}}
{{- define "gpupool.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "gpupool" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-gpupool" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "gpupool.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries besides app.kubernetes.io/name. */}}
{{- define "gpupool.commonLabels" -}}
app.kubernetes.io/part-of: gpupool
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "gpupool.chart" . }}
{{- end -}}

{{/* gpupool's objects. */}}
{{- define "gpupool.labels" -}}
app.kubernetes.io/name: gpupool
{{ include "gpupool.commonLabels" . }}
{{- end -}}

{{/* gpupool's selector: fixed, so that the NetworkPolicy, PDB and affinity match it. */}}
{{- define "gpupool.selectorLabels" -}}
app.kubernetes.io/name: gpupool
{{- end -}}

{{/* gpupool's pod labels: no chart or version label, so a chart upgrade alone does not
restart the pods (each restart moves the leader). */}}
{{- define "gpupool.podLabels" -}}
{{ include "gpupool.selectorLabels" . }}
app.kubernetes.io/part-of: gpupool
app.kubernetes.io/instance: {{ .Release.Name }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* cluster-autoscaler's objects. Its name label is what gpupool's NetworkPolicy admits. */}}
{{- define "gpupool.ca.labels" -}}
app.kubernetes.io/name: cluster-autoscaler
{{ include "gpupool.commonLabels" . }}
{{- end -}}

{{- define "gpupool.ca.selectorLabels" -}}
app.kubernetes.io/name: cluster-autoscaler
{{- end -}}

{{- define "gpupool.ca.podLabels" -}}
{{ include "gpupool.ca.selectorLabels" . }}
app.kubernetes.io/part-of: gpupool
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Names derived from the base name. */}}
{{- define "gpupool.serverTlsSecret" -}}{{ include "gpupool.fullname" . }}-server-tls{{- end -}}
{{- define "gpupool.clientTlsSecret" -}}{{ include "gpupool.fullname" . }}-client-tls{{- end -}}
{{- define "gpupool.webhookSecret" -}}{{ .Values.webhook.secretName | default (printf "%s-webhook" (include "gpupool.fullname" .)) }}{{- end -}}
{{- define "gpupool.ca.clusterName" -}}{{ include "gpupool.fullname" . }}-cluster-autoscaler{{- end -}}

{{/* The image reference; the tag defaults to the chart's appVersion. */}}
{{- define "gpupool.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
gpupool's config.yaml: .Values.config with `cloud`, the in-cluster server and kubernetes parts,
and (webhook.enabled) the webhook part filled in where not set. Refuses values that cannot
work: a config.cloud other than `cloud`, a real cloud without its section, config.webhook
without webhook.enabled (the port and secret would be missing), several replicas without
leader election.
*/}}
{{- define "gpupool.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $cloud := .Values.cloud -}}
{{- if and (hasKey $cfg "cloud") (ne (toString $cfg.cloud) $cloud) -}}
{{- fail (printf "config.cloud is %q but cloud is %q: set `cloud` only" (toString $cfg.cloud) $cloud) -}}
{{- end -}}
{{- if ne $cloud "sim" -}}
{{- $cfg = omit $cfg "sim" -}}
{{- if not (get $cfg $cloud) -}}
{{- fail (printf "cloud: %s needs config.%s and that cloud's node groups (README \"Running on ...\")" $cloud $cloud) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "cloud" $cloud -}}
{{- $tls := dict "cert" "/etc/gpupool/tls/tls.crt" "key" "/etc/gpupool/tls/tls.key" "cacert" "/etc/gpupool/tls/ca.crt" -}}
{{- $server := dict "grpc_listen" "0.0.0.0:8086" "http_listen" "0.0.0.0:8087" "tls" $tls "node_group_options" "unimplemented" -}}
{{- $_ := set $cfg "server" (mergeOverwrite $server (get $cfg "server" | default dict)) -}}
{{- $election := dict "enabled" true "lease_name" (include "gpupool.fullname" .) -}}
{{- $kube := dict "namespace" .Release.Namespace "leader_election" $election -}}
{{- $_ := set $cfg "kubernetes" (mergeOverwrite $kube (get $cfg "kubernetes" | default dict)) -}}
{{- if .Values.webhook.enabled -}}
{{- $webhook := dict "listen" "0.0.0.0:8088" "secret_file" "/etc/gpupool/webhook/secret" -}}
{{- $_ := set $cfg "webhook" (mergeOverwrite $webhook (get $cfg "webhook" | default dict)) -}}
{{- else if get $cfg "webhook" -}}
{{- fail "config.webhook is set but webhook.enabled is false: set webhook.enabled to get its port, Service and secret" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not $cfg.kubernetes.leader_election.enabled) -}}
{{- fail "replicaCount > 1 needs config.kubernetes.leader_election.enabled: two acting replicas would both scale the cloud" -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
