{{/* Names and labels shared by every template. */}}

{{- define "imp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of object names: the release name when it already says "imp". */}}
{{- define "imp.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "imp.operator.name" -}}{{ include "imp.fullname" . }}-operator{{- end }}
{{- define "imp.agent.name" -}}{{ include "imp.fullname" . }}-agent{{- end }}
{{- define "imp.webhook.name" -}}{{ include "imp.fullname" . }}-webhook{{- end }}

{{/* The Secret the operator reads its webhook certificate from. */}}
{{- define "imp.webhook.secretName" -}}
{{- if .Values.webhook.certManager.enabled }}
{{- include "imp.webhook.name" . }}-tls
{{- else }}
{{- $message := "webhook.secretName is required when webhook.certManager.enabled is false" }}
{{- required $message .Values.webhook.secretName }}
{{- end }}
{{- end }}

{{/* The agent's service account as the API server names it in requests. */}}
{{- define "imp.agent.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "imp.agent.name" . }}
{{- end }}

{{- define "imp.labels" -}}
app.kubernetes.io/name: {{ include "imp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: imp
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: pass (dict "ctx" $ "component" "operator"). */}}
{{- define "imp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imp.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "imp.componentLabels" -}}
{{ include "imp.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is pinned. */}}
{{- define "imp.image" -}}
{{- $tag := default .ctx.Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* The port number of agent.listen (host:port). */}}
{{- define "imp.agent.port" -}}
{{- regexReplaceAll "^.*:" .Values.agent.listen "" }}
{{- end }}

{{/*
Fails rendering when the agent could read Secrets only the operator should: runner
credentials, and the webhook key in the release namespace.
*/}}
{{- define "imp.checkSecretAccess" -}}
{{- $agent := .Values.rbac.agentSecretNamespaces }}
{{- $why := "the agent could read runner credentials" }}
{{- if and .Values.rbac.runnerNamespaces (has "*" $agent) }}
{{- fail (printf "rbac.runnerNamespaces cannot be combined with %s: %s"
  "rbac.agentSecretNamespaces [*]" $why) }}
{{- end }}
{{- range .Values.rbac.runnerNamespaces }}
{{- if has . $agent }}
{{- fail (printf "namespace %s is in rbac.runnerNamespaces and %s: %s"
  . "rbac.agentSecretNamespaces" $why) }}
{{- end }}
{{- end }}
{{- if has .Release.Namespace $agent }}
{{- fail (printf "rbac.agentSecretNamespaces must not hold the release namespace %s (%s)"
  .Release.Namespace "it keeps the webhook key") }}
{{- end }}
{{- end }}
