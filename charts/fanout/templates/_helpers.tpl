{{- define "fanout.name" -}}fanout-operator{{- end -}}

{{- define "fanout.labels" -}}
app.kubernetes.io/name: fanout-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fanout.selector" -}}
app.kubernetes.io/name: fanout-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fanout.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "fanout.name" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{- define "fanout.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
