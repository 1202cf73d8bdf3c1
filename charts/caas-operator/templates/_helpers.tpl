{{- define "caas-operator.name" -}}caas-operator{{- end -}}

{{- define "caas-operator.fullname" -}}
{{- if contains "caas-operator" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-caas-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
The ServiceAccount the operator runs as: serviceAccount.name if set, else the fullname
when the chart creates it, else "default".
*/}}
{{- define "caas-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "caas-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
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
