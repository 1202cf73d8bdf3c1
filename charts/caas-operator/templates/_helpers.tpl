{{- define "caas-operator.name" -}}caas-operator{{- end -}}

{{- define "caas-operator.fullname" -}}
{{- if contains "caas-operator" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-caas-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "caas-operator.selectorLabels" -}}
app.kubernetes.io/name: caas-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "caas-operator.labels" -}}
{{ include "caas-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: caas-operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
