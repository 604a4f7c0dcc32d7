{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "talon-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: release name plus chart name, unless the release name contains it.
*/}}
{{- define "talon-bridge.fullname" -}}
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

{{/*
Chart name and version for the helm.sh/chart label ("+" is not allowed in label values).
*/}}
{{- define "talon-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "talon-bridge.labels" -}}
helm.sh/chart: {{ include "talon-bridge.chart" . }}
{{ include "talon-bridge.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: talon-bridge
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels (immutable: name and instance only).
*/}}
{{- define "talon-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "talon-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Service account of the worker pods.
*/}}
{{- define "talon-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "talon-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference; a digest wins over the tag.
*/}}
{{- define "talon-bridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Name of the chart-managed Secret.
*/}}
{{- define "talon-bridge.secretName" -}}
{{- printf "%s-secrets" (include "talon-bridge.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Secret holding the Talon.One API key ("" when none is configured).
*/}}
{{- define "talon-bridge.talonSecretName" -}}
{{- if .Values.talon.existingSecret }}
{{- .Values.talon.existingSecret }}
{{- else if .Values.talon.apiKey }}
{{- include "talon-bridge.secretName" . }}
{{- end }}
{{- end }}

{{/*
Secret holding the SASL credentials ("" when SASL is off).
*/}}
{{- define "talon-bridge.saslSecretName" -}}
{{- if .Values.kafka.sasl.enabled }}
{{- default (include "talon-bridge.secretName" .) .Values.kafka.sasl.existingSecret }}
{{- end }}
{{- end }}

{{/*
Whether the chart renders its own Secret: "true" or "".
*/}}
{{- define "talon-bridge.ownSecret" -}}
{{- $talon := and .Values.talon.apiKey (not .Values.talon.existingSecret) }}
{{- $sasl := and .Values.kafka.sasl.enabled (not .Values.kafka.sasl.existingSecret) }}
{{- if or $talon $sasl }}true{{ end }}
{{- end }}

{{/*
The librdkafka pass-through (BRIDGE_KAFKA_CONFIG) as JSON: security settings derived from
kafka.sasl and kafka.tls, overridden by kafka.config. Values become strings (librdkafka parses
every property from a string; whole numbers never turn into "1e+06").
*/}}
{{- define "talon-bridge.kafkaConfig" -}}
{{- $k := .Values.kafka }}
{{- $derived := dict }}
{{- if and $k.sasl.enabled $k.tls.enabled }}
{{- $_ := set $derived "security.protocol" "SASL_SSL" }}
{{- else if $k.sasl.enabled }}
{{- $_ := set $derived "security.protocol" "SASL_PLAINTEXT" }}
{{- else if $k.tls.enabled }}
{{- $_ := set $derived "security.protocol" "SSL" }}
{{- end }}
{{- if $k.sasl.enabled }}
{{- $_ := set $derived "sasl.mechanism" $k.sasl.mechanism }}
{{- end }}
{{- if $k.tls.enabled }}
{{- if $k.tls.caKey }}
{{- $_ := set $derived "ssl.ca.location" (printf "%s/ca.crt" $k.tls.mountPath) }}
{{- end }}
{{- if $k.tls.certKey }}
{{- $_ := set $derived "ssl.certificate.location" (printf "%s/tls.crt" $k.tls.mountPath) }}
{{- end }}
{{- if $k.tls.keyKey }}
{{- $_ := set $derived "ssl.key.location" (printf "%s/tls.key" $k.tls.mountPath) }}
{{- end }}
{{- end }}
{{- range $key, $value := $k.config }}
{{- if and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) }}
{{- $value = int64 $value }}
{{- end }}
{{- $_ := set $derived $key (toString $value) }}
{{- end }}
{{- toJson $derived }}
{{- end }}

{{/*
BRIDGE_* settings of the ConfigMap, as a dict (values are strings).
*/}}
{{- define "talon-bridge.settings" -}}
{{- $v := .Values }}
{{- $s := dict
  "BRIDGE_KAFKA_BOOTSTRAP_SERVERS" (join "," $v.kafka.bootstrapServers)
  "BRIDGE_INPUT_TOPICS" (join "," $v.kafka.topics.input)
  "BRIDGE_OUTPUT_TOPIC" $v.kafka.topics.output
  "BRIDGE_DLQ_TOPIC" $v.kafka.topics.dlq
  "BRIDGE_PARKING_TOPIC" $v.kafka.topics.parking
  "BRIDGE_GROUP_ID" $v.kafka.groupId
  "BRIDGE_KAFKA_CONFIG" (include "talon-bridge.kafkaConfig" .)
  "BRIDGE_ENCODING" $v.kafka.encoding
  "BRIDGE_TALON_CONNECT_TIMEOUT" (toString $v.talon.connectTimeout)
  "BRIDGE_TALON_READ_TIMEOUT" (toString $v.talon.readTimeout)
  "BRIDGE_TALON_POOL_TIMEOUT" (toString $v.talon.poolTimeout)
  "BRIDGE_TALON_CALL_TIMEOUT" (toString $v.talon.callTimeout)
  "BRIDGE_TALON_IDEMPOTENCY_KEYS" (toString $v.talon.idempotencyKeys)
  "BRIDGE_TALON_HTTP_ENGINE" $v.talon.httpEngine
  "BRIDGE_TALON_ALLOW_INSECURE_HTTP" (toString $v.talon.allowInsecureHttp)
  "BRIDGE_MAX_IN_FLIGHT" (toString (int64 $v.worker.maxInFlight))
  "BRIDGE_MAX_BUFFERED_RECORDS" (toString (int64 $v.worker.maxBufferedRecords))
  "BRIDGE_DRAIN_TIMEOUT" (toString $v.worker.drainTimeout)
  "BRIDGE_COMMIT_INTERVAL" (toString $v.worker.commitInterval)
  "BRIDGE_SKIP_EMPTY_EFFECTS" (toString $v.worker.skipEmptyEffects)
  "BRIDGE_RETRY_MAX_ATTEMPTS" (toString (int64 $v.worker.retry.maxAttempts))
  "BRIDGE_RETRY_MAX_ELAPSED" (toString $v.worker.retry.maxElapsed)
  "BRIDGE_RETRY_BASE_DELAY" (toString $v.worker.retry.baseDelay)
  "BRIDGE_RETRY_MAX_DELAY" (toString $v.worker.retry.maxDelay)
  "BRIDGE_ON_POISON" $v.worker.onPoison
  "BRIDGE_EXACTLY_ONCE" (toString $v.worker.exactlyOnce)
  "BRIDGE_EVENT_LOOP" $v.worker.eventLoop
  "BRIDGE_METRICS_PORT" (toString (int64 $v.metrics.port))
  "BRIDGE_LOG_LEVEL" $v.worker.logLevel
  "BRIDGE_LOG_FORMAT" $v.worker.logFormat
  "BRIDGE_SECRETS_DIR" $v.worker.secretsDir
}}
{{- $sr := $v.kafka.schemaRegistry }}
{{- if $v.kafka.schemaRegistryUrl }}
{{- $_ := set $s "BRIDGE_SCHEMA_REGISTRY_URL" $v.kafka.schemaRegistryUrl }}
{{- $_ := set $s "BRIDGE_SCHEMA_REGISTRY_TIMEOUT" (toString $sr.timeout) }}
{{- $_ := set $s "BRIDGE_SCHEMA_REGISTRY_SUBJECT_STRATEGY" $sr.subjectStrategy }}
{{- with $sr.username }}
{{- $_ := set $s "BRIDGE_SCHEMA_REGISTRY_USERNAME" . }}
{{- end }}
{{- with $sr.logicalCluster }}
{{- $_ := set $s "BRIDGE_SCHEMA_REGISTRY_LOGICAL_CLUSTER" . }}
{{- end }}
{{- if $sr.caSecret }}
{{- $_ := set $s "BRIDGE_SCHEMA_REGISTRY_CA_LOCATION" "/var/run/secrets/talon-bridge-registry/ca.crt" }}
{{- end }}
{{- end }}
{{- if $v.talon.baseUrl }}
{{- if regexMatch "://[^/]*@" $v.talon.baseUrl }}
{{- fail "talon.baseUrl holds credentials, which would land in the ConfigMap: the API key goes in talon.existingSecret" }}
{{- end }}
{{- if and (hasPrefix "http://" $v.talon.baseUrl) (not $v.talon.allowInsecureHttp) }}
{{- fail "talon.baseUrl is plain http, which sends the API key in clear text: use https (talon.allowInsecureHttp: true only for a local simulator)" }}
{{- end }}
{{- $_ := set $s "BRIDGE_TALON_BASE_URL" $v.talon.baseUrl }}
{{- end }}
{{- range $name, $value := $v.extraConfig }}
{{- $_ := set $s $name (toString $value) }}
{{- end }}
{{- /* The ConfigMap is plain text: refuse credentials however they got into it. */}}
{{- range $key, $_ := fromJson (get $s "BRIDGE_KAFKA_CONFIG") }}
{{- $k := lower $key }}
{{- if or (hasSuffix ".password" $k) (hasSuffix ".secret" $k) (hasSuffix ".passphrase" $k) (hasSuffix ".key.pem" $k) (eq $k "sasl.jaas.config") }}
{{- fail (printf "kafka.config: %s is a secret and would land in the ConfigMap; put it in the Secret named by kafka.secretConfig.existingSecret (BRIDGE_KAFKA_SECRET_CONFIG), or use kafka.sasl / kafka.tls" $key) }}
{{- end }}
{{- end }}
{{- if regexMatch "://[^/,]*@" (get $s "BRIDGE_SCHEMA_REGISTRY_URL" | default "") }}
{{- fail "kafka.schemaRegistryUrl holds credentials, which would land in the ConfigMap: set kafka.schemaRegistry.username and the password in kafka.schemaRegistry.existingSecret" }}
{{- end }}
{{- toYaml $s }}
{{- end }}

{{/*
The projected volume of secret files: one file per setting, named like its variable.
*/}}
{{- define "talon-bridge.secretSources" -}}
{{- $talon := include "talon-bridge.talonSecretName" . }}
{{- $sasl := include "talon-bridge.saslSecretName" . }}
{{- $tls := .Values.kafka.tls }}
{{- if $talon }}
- secret:
    name: {{ $talon }}
    items:
      - key: {{ .Values.talon.existingSecretKey }}
        path: BRIDGE_TALON_API_KEY
{{- end }}
{{- if $sasl }}
- secret:
    name: {{ $sasl }}
    items:
      - key: {{ .Values.kafka.sasl.usernameKey }}
        path: BRIDGE_KAFKA_SASL_USERNAME
      - key: {{ .Values.kafka.sasl.passwordKey }}
        path: BRIDGE_KAFKA_SASL_PASSWORD
{{- end }}
{{- if and $tls.enabled $tls.keyPasswordKey }}
- secret:
    name: {{ $tls.existingSecret }}
    items:
      - key: {{ $tls.keyPasswordKey }}
        path: BRIDGE_KAFKA_SSL_KEY_PASSWORD
{{- end }}
{{- with .Values.kafka.secretConfig.existingSecret }}
- secret:
    name: {{ . }}
    items:
      - key: {{ $.Values.kafka.secretConfig.key }}
        path: BRIDGE_KAFKA_SECRET_CONFIG
{{- end }}
{{- $sr := .Values.kafka.schemaRegistry }}
{{- if and .Values.kafka.schemaRegistryUrl $sr.existingSecret (or $sr.passwordKey $sr.bearerTokenKey) }}
- secret:
    name: {{ $sr.existingSecret }}
    items:
      {{- if $sr.passwordKey }}
      - key: {{ $sr.passwordKey }}
        path: BRIDGE_SCHEMA_REGISTRY_PASSWORD
      {{- end }}
      {{- if $sr.bearerTokenKey }}
      - key: {{ $sr.bearerTokenKey }}
        path: BRIDGE_SCHEMA_REGISTRY_BEARER_TOKEN
      {{- end }}
{{- end }}
{{- end }}

{{/*
Volumes shared by the worker and the replay Job: /tmp, secret files, TLS files.
*/}}
{{- define "talon-bridge.volumes" -}}
- name: tmp
  emptyDir:
    {{- with .Values.tmpVolume.medium }}
    medium: {{ . }}
    {{- end }}
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- with include "talon-bridge.secretSources" . }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      {{- . | trim | nindent 6 }}
{{- end }}
{{- include "talon-bridge.tlsVolume" . }}
{{- if and .Values.kafka.schemaRegistryUrl .Values.kafka.schemaRegistry.caSecret }}
- name: registry-ca
  secret:
    secretName: {{ .Values.kafka.schemaRegistry.caSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.kafka.schemaRegistry.caKey }}
        path: ca.crt
{{- end }}
{{- end }}

{{/*
The Kafka TLS files (CA, client certificate and key) under fixed names.
*/}}
{{- define "talon-bridge.tlsVolume" -}}
{{- $tls := .Values.kafka.tls }}
{{- if $tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ $tls.existingSecret }}
    defaultMode: 0440
    items:
      {{- if $tls.caKey }}
      - key: {{ $tls.caKey }}
        path: ca.crt
      {{- end }}
      {{- if $tls.certKey }}
      - key: {{ $tls.certKey }}
        path: tls.crt
      {{- end }}
      {{- if $tls.keyKey }}
      - key: {{ $tls.keyKey }}
        path: tls.key
      {{- end }}
{{- end }}
{{- end }}

{{- define "talon-bridge.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "talon-bridge.secretSources" . }}
- name: secrets
  mountPath: {{ .Values.worker.secretsDir }}
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: {{ .Values.kafka.tls.mountPath }}
  readOnly: true
{{- end }}
{{- if and .Values.kafka.schemaRegistryUrl .Values.kafka.schemaRegistry.caSecret }}
- name: registry-ca
  mountPath: /var/run/secrets/talon-bridge-registry
  readOnly: true
{{- end }}
{{- end }}

{{/*
The worker's drain budget rounded up to whole seconds.
*/}}
{{- define "talon-bridge.drainSeconds" -}}
{{- ceil .Values.worker.drainTimeout | int64 }}
{{- end }}

{{/*
terminationGracePeriodSeconds: explicit, or the drain budget plus 15 s for the final commit,
producer flush and consumer close. An explicit value must leave at least 5 s after the drain.
*/}}
{{- define "talon-bridge.terminationGracePeriod" -}}
{{- $drain := include "talon-bridge.drainSeconds" . | int64 }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $drain 15 }}
{{- else }}
{{- $grace := .Values.terminationGracePeriodSeconds | int64 }}
{{- if lt $grace (add $drain 5) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least worker.drainTimeout + 5 (%d): Kubernetes kills the worker after the grace period, cutting its drain short" $grace (add $drain 5)) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/*
Checks of values combinations that the schema cannot express; rendered once by the Deployment.
*/}}
{{- define "talon-bridge.validate" -}}
{{- $v := .Values }}
{{- if and $v.autoscaling.enabled $v.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are mutually exclusive: KEDA manages its own HorizontalPodAutoscaler and rejects a target that another autoscaler already scales" }}
{{- end }}
{{- if and $v.kafka.tls.enabled (not $v.kafka.tls.existingSecret) }}
{{- fail "kafka.tls.enabled needs kafka.tls.existingSecret (a Secret with the CA certificate, and client certificate and key for mutual TLS)" }}
{{- end }}
{{- if and $v.kafka.sasl.enabled (not $v.kafka.sasl.existingSecret) (or (not $v.kafka.sasl.username) (not $v.kafka.sasl.password)) }}
{{- fail "kafka.sasl.enabled needs kafka.sasl.existingSecret, or both kafka.sasl.username and kafka.sasl.password" }}
{{- end }}
{{- range $name, $_ := $v.extraConfig }}
{{- if has $name (list "BRIDGE_TALON_API_KEY" "BRIDGE_KAFKA_SASL_USERNAME" "BRIDGE_KAFKA_SASL_PASSWORD" "BRIDGE_KAFKA_SSL_KEY_PASSWORD") }}
{{- fail (printf "extraConfig.%s is a secret: use the chart's secret values or an existing Secret, never the ConfigMap" $name) }}
{{- end }}
{{- end }}
{{- if $v.topics.create.enabled }}
{{- $partitions := $v.topics.create.partitions | int64 }}
{{- $ceiling := $v.replicaCount | int64 }}
{{- if $v.keda.enabled }}{{ $ceiling = $v.keda.maxReplicaCount | int64 }}{{ end }}
{{- if $v.autoscaling.enabled }}{{ $ceiling = $v.autoscaling.maxReplicas | int64 }}{{ end }}
{{- if gt $ceiling $partitions }}
{{- fail (printf "up to %d replicas but %d partitions (topics.create.partitions): each partition has one consumer in the group, so replicas beyond the partition count sit idle" $ceiling $partitions) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
librdkafka SASL mechanism in KEDA's spelling.
*/}}
{{- define "talon-bridge.kedaSasl" -}}
{{- get (dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512") .Values.kafka.sasl.mechanism }}
{{- end }}
