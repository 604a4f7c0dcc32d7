{{/*
The worker's OTEL_* variables when tracing.enabled: spans over OTLP/HTTP (docs/operations.md#tracing).
They are the container's own `env`, not the ConfigMap's, which holds BRIDGE_* settings only.
*/}}
{{- define "talon-bridge.tracingEnv" -}}
{{- $t := .Values.tracing }}
- name: OTEL_TRACES_EXPORTER
  value: "otlp"
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: "http/protobuf"
{{- with $t.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ $t.serviceName | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $t.sampler | quote }}
{{- with $t.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- with $t.resourceAttributes }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ include "talon-bridge.resourceAttributes" . | quote }}
{{- end }}
{{- end }}

{{- define "talon-bridge.resourceAttributes" -}}
{{- $pairs := list }}
{{- range $k, $v := . }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
