{{- define "hearth.name" -}}hearth{{- end -}}
{{- define "hearth.fullname" -}}{{ printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "hearth.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- define "hearth.labels" -}}
app.kubernetes.io/name: hearth
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "hearth.nodeArgs" -}}
{{- $args := list -}}
{{- with .Values.nodes.cluster -}}
{{- if .postgres -}}{{- $args = concat $args (list "--cluster" "--postgres" .postgres "--nats" .nats "--redis" .redis) -}}{{- end -}}
{{- end -}}
{{- $args = concat $args .Values.nodes.extraArgs -}}
{{- join " " $args -}}
{{- end -}}
