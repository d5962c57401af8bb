{{/*
loadshed.fullname prefixes every object's name. With the release named
"loadshed" (as docs/install.md does) the names are config/default's exactly:
loadshed-controller-manager, loadshed-manager-role, ...
*/}}
{{- define "loadshed.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* loadshed.serviceAccountName is the operator's ServiceAccount. */}}
{{- define "loadshed.serviceAccountName" -}}
{{- include "loadshed.fullname" . }}-controller-manager
{{- end -}}

{{/*
loadshed.labels are on every object's metadata: config/'s labels with Helm's
managed-by, plus the release's. control-plane is added where config/ has it.
*/}}
{{- define "loadshed.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
loadshed.selectorLabels select the operator's pods (the Deployment, the
metrics Service, the ServiceMonitor): the same as config/'s, so that the
chart and kustomize install the same objects.
*/}}
{{- define "loadshed.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
control-plane: controller-manager
{{- end -}}

{{/* loadshed.image is the operator's image; the tag defaults to appVersion. */}}
{{- define "loadshed.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
loadshed.operatorUser is the username the API server gives the operator's
ServiceAccount tokens: the admission policies admit its writes only.
*/}}
{{- define "loadshed.operatorUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "loadshed.serviceAccountName" . }}
{{- end -}}
