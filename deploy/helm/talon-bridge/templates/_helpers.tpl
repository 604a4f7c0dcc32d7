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
Container image reference: [registry/]repository, and a digest wins over the tag.
*/}}
{{- define "talon-bridge.image" -}}
{{- $repo := .Values.image.repository }}
{{- with .Values.image.registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Workload kind of the worker pods.
*/}}
{{- define "talon-bridge.workloadKind" -}}
{{- if .Values.statefulset.enabled }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{/*
Metadata of a Job's or the test's pod: the chart's labels and the global podAnnotations and
podLabels, with the pod's own (e.g. to switch sidecar injection off) merged over them.
Call with (dict "root" $ "component" "topics" "own" .Values.topics.create), optionally with
"annotations" the chart sets itself.
*/}}
{{- define "talon-bridge.podMetadata" -}}
{{- $annotations := mergeOverwrite (dict) .root.Values.podAnnotations (.own.podAnnotations | default dict) (.annotations | default dict) }}
{{- $labels := mergeOverwrite (dict) .root.Values.podLabels (.own.podLabels | default dict) }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
labels:
  {{- include "talon-bridge.labels" .root | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
  {{- with $labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
Where every pod of the chart may run: priority class, node selector, affinity, tolerations.
*/}}
{{- define "talon-bridge.scheduling" -}}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
envFrom of the app containers: the ConfigMap (unless "noConfigMap") and extraEnvFrom.
*/}}
{{- define "talon-bridge.envFrom" -}}
{{- if not .noConfigMap }}
- configMapRef:
    name: {{ include "talon-bridge.fullname" .root }}
{{- end }}
{{- with .root.Values.extraEnvFrom }}
{{ toYaml . }}
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
SASL with a username and password ("true" or ""); OAUTHBEARER uses a client secret instead.
*/}}
{{- define "talon-bridge.saslPassword" -}}
{{- if and .Values.kafka.sasl.enabled (ne .Values.kafka.sasl.mechanism "OAUTHBEARER") }}true{{ end }}
{{- end }}

{{/*
SASL/OAUTHBEARER with OIDC client credentials ("true" or "").
*/}}
{{- define "talon-bridge.oauthbearer" -}}
{{- if and .Values.kafka.sasl.enabled (eq .Values.kafka.sasl.mechanism "OAUTHBEARER") }}true{{ end }}
{{- end }}

{{/*
Secret holding the SASL password, and the username unless kafka.sasl.username is set ("" when
no password is used). Call with (dict "root" $ "own" NAME), NAME being the chart-managed Secret.
*/}}
{{- define "talon-bridge.saslSecretName" -}}
{{- if include "talon-bridge.saslPassword" .root }}
{{- default .own .root.Values.kafka.sasl.existingSecret }}
{{- end }}
{{- end }}

{{/*
Secret holding the OIDC client secret ("" without OAUTHBEARER); called like saslSecretName.
*/}}
{{- define "talon-bridge.oauthSecretName" -}}
{{- if include "talon-bridge.oauthbearer" .root }}
{{- default .own .root.Values.kafka.sasl.oauthbearer.existingSecret }}
{{- end }}
{{- end }}

{{/*
Secrets of the TLS files: the CA's, and the client certificate's (also its key and password).
*/}}
{{- define "talon-bridge.tlsCaSecret" -}}
{{- default .Values.kafka.tls.existingSecret .Values.kafka.tls.caSecret }}
{{- end }}
{{- define "talon-bridge.tlsCertSecret" -}}
{{- default .Values.kafka.tls.existingSecret .Values.kafka.tls.certSecret }}
{{- end }}

{{/*
Kafka secrets the chart stores itself (inline values), as Secret data lines.
*/}}
{{- define "talon-bridge.kafkaSecretData" -}}
{{- $sasl := .Values.kafka.sasl }}
{{- if and (include "talon-bridge.saslPassword" .) (not $sasl.existingSecret) }}
{{ $sasl.passwordKey }}: {{ $sasl.password | b64enc | quote }}
{{- end }}
{{- if and (include "talon-bridge.oauthbearer" .) (not $sasl.oauthbearer.existingSecret) }}
{{ $sasl.oauthbearer.clientSecretKey }}: {{ $sasl.oauthbearer.clientSecret | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
Whether the chart renders its own Secret: "true" or "".
*/}}
{{- define "talon-bridge.ownSecret" -}}
{{- $talon := and .Values.talon.apiKey (not .Values.talon.existingSecret) }}
{{- if or $talon (include "talon-bridge.kafkaSecretData" .) }}true{{ end }}
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
{{- if include "talon-bridge.oauthbearer" . }}
{{- $o := $k.sasl.oauthbearer }}
{{- $_ := set $derived "sasl.oauthbearer.method" "oidc" }}
{{- $_ := set $derived "sasl.oauthbearer.client.id" $o.clientId }}
{{- $_ := set $derived "sasl.oauthbearer.token.endpoint.url" $o.tokenEndpointUrl }}
{{- with $o.scope }}
{{- $_ := set $derived "sasl.oauthbearer.scope" . }}
{{- end }}
{{- with $o.extensions }}
{{- $_ := set $derived "sasl.oauthbearer.extensions" . }}
{{- end }}
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
{{- $_ := set $derived $key (include "talon-bridge.librdkafkaValue" $value) }}
{{- end }}
{{- toJson $derived }}
{{- end }}

{{/*
BRIDGE_KAFKA_PRODUCER_CONFIG or BRIDGE_KAFKA_CONSUMER_CONFIG: a dict of librdkafka properties
(kafka.producerConfig, kafka.consumerConfig) as JSON, its values as strings.
*/}}
{{- define "talon-bridge.librdkafkaProperties" -}}
{{- $conf := dict }}
{{- range $key, $value := . }}
{{- $_ := set $conf $key (include "talon-bridge.librdkafkaValue" $value) }}
{{- end }}
{{- toJson $conf }}
{{- end }}

{{/*
A librdkafka property value as a string: YAML numbers are floats, and a whole one would
otherwise read 1e+06.
*/}}
{{- define "talon-bridge.librdkafkaValue" -}}
{{- $value := . }}
{{- if and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) }}
{{- $value = int64 $value }}
{{- end }}
{{- toString $value }}
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
  "BRIDGE_GROUP_PROTOCOL" $v.kafka.groupProtocol
  "BRIDGE_KAFKA_CONFIG" (include "talon-bridge.kafkaConfig" .)
  "BRIDGE_KAFKA_PRODUCER_CONFIG" (include "talon-bridge.librdkafkaProperties" $v.kafka.producerConfig)
  "BRIDGE_KAFKA_CONSUMER_CONFIG" (include "talon-bridge.librdkafkaProperties" $v.kafka.consumerConfig)
  "BRIDGE_ENCODING" $v.kafka.encoding
  "BRIDGE_TALON_CONNECT_TIMEOUT" (toString $v.talon.connectTimeout)
  "BRIDGE_TALON_READ_TIMEOUT" (toString $v.talon.readTimeout)
  "BRIDGE_TALON_POOL_TIMEOUT" (toString $v.talon.poolTimeout)
  "BRIDGE_TALON_IDLE_TIMEOUT" (toString $v.talon.idleTimeout)
  "BRIDGE_TALON_CALL_TIMEOUT" (toString $v.talon.callTimeout)
  "BRIDGE_TALON_IDEMPOTENCY_KEYS" (toString $v.talon.idempotencyKeys)
  "BRIDGE_TALON_EVENTS_API" $v.talon.eventsApi
  "BRIDGE_TALON_HTTP_ENGINE" $v.talon.httpEngine
  "BRIDGE_TALON_ALLOW_INSECURE_HTTP" (toString $v.talon.allowInsecureHttp)
  "BRIDGE_MAX_IN_FLIGHT" (toString (int64 $v.worker.maxInFlight))
  "BRIDGE_ADAPTIVE_IN_FLIGHT" (toString $v.worker.adaptiveInFlight)
  "BRIDGE_MAX_BUFFERED_RECORDS" (toString (int64 $v.worker.maxBufferedRecords))
  "BRIDGE_MAX_QUEUED_PER_SESSION" (toString (int64 $v.worker.maxQueuedPerSession))
  "BRIDGE_MAX_IN_FLIGHT_PER_PROFILE" (toString (int64 $v.worker.maxInFlightPerProfile))
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
  "BRIDGE_WORKERS" (toString (int64 $v.worker.processes))
  "BRIDGE_METRICS_PORT" (toString (int64 $v.metrics.port))
  "BRIDGE_LOG_LEVEL" $v.worker.logLevel
  "BRIDGE_LOG_FORMAT" $v.worker.logFormat
  "BRIDGE_SECRETS_DIR" $v.worker.secretsDir
  "BRIDGE_APPLICATION_HEADER" $v.talon.applicationHeader
}}
{{- if $v.talon.applications }}
{{- $_ := set $s "BRIDGE_APPLICATIONS_FILE" (printf "%s/applications.yaml" (include "talon-bridge.applicationsDir" .)) }}
{{- end }}
{{- with $v.talon.maxRps }}
{{- $_ := set $s "BRIDGE_TALON_MAX_RPS" (toString .) }}
{{- end }}
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
{{- if and (include "talon-bridge.saslPassword" .) $v.kafka.sasl.username }}
{{- /* Not a secret: from values when the Secret holds only the password (Strimzi KafkaUser). */}}
{{- $_ := set $s "BRIDGE_KAFKA_SASL_USERNAME" $v.kafka.sasl.username }}
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
Projected sources of the Kafka secret files; call with (dict "root" $ "own" NAME), NAME being
the Secret that holds inline (chart-managed) values.
*/}}
{{- define "talon-bridge.kafkaSecretSources" -}}
{{- $v := .root.Values }}
{{- $tls := $v.kafka.tls }}
{{- with include "talon-bridge.saslSecretName" . }}
- secret:
    name: {{ . }}
    items:
      {{- if not $v.kafka.sasl.username }}
      - key: {{ $v.kafka.sasl.usernameKey }}
        path: BRIDGE_KAFKA_SASL_USERNAME
      {{- end }}
      - key: {{ $v.kafka.sasl.passwordKey }}
        path: BRIDGE_KAFKA_SASL_PASSWORD
{{- end }}
{{- with include "talon-bridge.oauthSecretName" . }}
- secret:
    name: {{ . }}
    items:
      - key: {{ $v.kafka.sasl.oauthbearer.clientSecretKey }}
        path: BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET
{{- end }}
{{- if and $tls.enabled $tls.keyPasswordKey }}
- secret:
    name: {{ include "talon-bridge.tlsCertSecret" .root }}
    items:
      - key: {{ $tls.keyPasswordKey }}
        path: BRIDGE_KAFKA_SSL_KEY_PASSWORD
{{- end }}
{{- with $v.kafka.secretConfig.existingSecret }}
- secret:
    name: {{ . }}
    items:
      - key: {{ $v.kafka.secretConfig.key }}
        path: BRIDGE_KAFKA_SECRET_CONFIG
{{- end }}
{{- end }}

{{/*
Several Talon.One applications: where the routing table and each application's key are mounted.
*/}}
{{- define "talon-bridge.applicationsDir" -}}/etc/talon-bridge/applications{{- end }}
{{- define "talon-bridge.applicationKeysDir" -}}/var/run/secrets/talon-apps{{- end }}
{{- define "talon-bridge.applicationsName" -}}
{{- printf "%s-applications" (include "talon-bridge.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The routing table (BRIDGE_APPLICATIONS_FILE) from talon.applications; keys are files, never in it.
*/}}
{{- define "talon-bridge.applicationsTable" -}}
{{- $keys := include "talon-bridge.applicationKeysDir" . -}}
applications:
{{- range .Values.talon.applications }}
  - name: {{ .name | quote }}
    base_url: {{ .baseUrl | quote }}
    api_key_file: {{ printf "%s/%s/api-key" $keys .name | quote }}
    {{- with .topics }}
    topics: {{ toJson . }}
    {{- end }}
{{- end }}
{{- with .Values.talon.defaultApplication }}
default: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The projected volume of secret files: one file per setting, named like its variable.
*/}}
{{- define "talon-bridge.secretSources" -}}
{{- $talon := include "talon-bridge.talonSecretName" . }}
{{- if $talon }}
- secret:
    name: {{ $talon }}
    items:
      - key: {{ .Values.talon.existingSecretKey }}
        path: BRIDGE_TALON_API_KEY
{{- end }}
{{- include "talon-bridge.kafkaSecretSources" (dict "root" . "own" (include "talon-bridge.secretName" .)) }}
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
{{- with .Values.talon.applications }}
- name: talon-applications
  configMap:
    name: {{ include "talon-bridge.applicationsName" $ }}
- name: talon-application-keys
  projected:
    defaultMode: 0440
    sources:
      {{- range . }}
      - secret:
          name: {{ .existingSecret }}
          items:
            - key: {{ .existingSecretKey | default "api-key" }}
              path: {{ printf "%s/api-key" .name }}
      {{- end }}
{{- end }}
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
The Kafka TLS files (CA, client certificate and key) under fixed names, from one Secret or two.
*/}}
{{- define "talon-bridge.tlsVolume" -}}
{{- $tls := .Values.kafka.tls }}
{{- if and $tls.enabled (or $tls.caKey $tls.certKey $tls.keyKey) }}
- name: kafka-tls
  projected:
    defaultMode: 0440
    sources:
      {{- if $tls.caKey }}
      - secret:
          name: {{ include "talon-bridge.tlsCaSecret" . }}
          items:
            - key: {{ $tls.caKey }}
              path: ca.crt
      {{- end }}
      {{- if or $tls.certKey $tls.keyKey }}
      - secret:
          name: {{ include "talon-bridge.tlsCertSecret" . }}
          items:
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
{{- end }}

{{- define "talon-bridge.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "talon-bridge.secretSources" . }}
- name: secrets
  mountPath: {{ .Values.worker.secretsDir }}
  readOnly: true
{{- end }}
{{- if include "talon-bridge.tlsVolume" . }}
- name: kafka-tls
  mountPath: {{ .Values.kafka.tls.mountPath }}
  readOnly: true
{{- end }}
{{- if .Values.talon.applications }}
- name: talon-applications
  mountPath: {{ include "talon-bridge.applicationsDir" . }}
  readOnly: true
- name: talon-application-keys
  mountPath: {{ include "talon-bridge.applicationKeysDir" . }}
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
{{- with .Values.talon.applications }}
{{- if or $.Values.talon.baseUrl $.Values.talon.apiKey $.Values.talon.existingSecret }}
{{- fail "talon.applications replaces talon.baseUrl, talon.apiKey and talon.existingSecret: unset them (each application has its baseUrl and existingSecret)" }}
{{- end }}
{{- $names := list }}
{{- range . }}
{{- if has .name $names }}
{{- fail (printf "talon.applications: the name %q is given twice" .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- if regexMatch "://[^/]*@" .baseUrl }}
{{- fail (printf "talon.applications (%s): baseUrl holds credentials, which would land in the ConfigMap: the API key goes in existingSecret" .name) }}
{{- end }}
{{- if and (hasPrefix "http://" .baseUrl) (not $.Values.talon.allowInsecureHttp) }}
{{- fail (printf "talon.applications (%s): baseUrl is plain http, which sends the API key in clear text: use https (talon.allowInsecureHttp: true only for a local simulator)" .name) }}
{{- end }}
{{- end }}
{{- with $.Values.talon.defaultApplication }}
{{- if not (has . $names) }}
{{- fail (printf "talon.defaultApplication %q is not one of talon.applications" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- $v := .Values }}
{{- if and $v.autoscaling.enabled $v.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are mutually exclusive: KEDA manages its own HorizontalPodAutoscaler and rejects a target that another autoscaler already scales" }}
{{- end }}
{{- $tls := $v.kafka.tls }}
{{- if and $tls.enabled $tls.caKey (not (include "talon-bridge.tlsCaSecret" .)) }}
{{- fail "kafka.tls.caKey needs kafka.tls.caSecret or kafka.tls.existingSecret (the Secret with the CA certificate); set caKey to \"\" to use the system trust store" }}
{{- end }}
{{- if and $tls.enabled (or $tls.certKey $tls.keyKey $tls.keyPasswordKey) (not (include "talon-bridge.tlsCertSecret" .)) }}
{{- fail "kafka.tls.certKey/keyKey need kafka.tls.certSecret or kafka.tls.existingSecret (the Secret with the client certificate and key)" }}
{{- end }}
{{- if and $tls.enabled (ne (empty $tls.certKey) (empty $tls.keyKey)) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together: mutual TLS needs both the client certificate and its key" }}
{{- end }}
{{- $sasl := $v.kafka.sasl }}
{{- if and (include "talon-bridge.saslPassword" .) (not $sasl.existingSecret) (or (not $sasl.username) (not $sasl.password)) }}
{{- fail "kafka.sasl.enabled needs kafka.sasl.existingSecret, or both kafka.sasl.username and kafka.sasl.password" }}
{{- end }}
{{- if include "talon-bridge.oauthbearer" . }}
{{- $o := $sasl.oauthbearer }}
{{- if or (not $o.tokenEndpointUrl) (not $o.clientId) }}
{{- fail "kafka.sasl.mechanism OAUTHBEARER needs kafka.sasl.oauthbearer.tokenEndpointUrl and kafka.sasl.oauthbearer.clientId" }}
{{- end }}
{{- if and (not $o.existingSecret) (not $o.clientSecret) }}
{{- fail "kafka.sasl.mechanism OAUTHBEARER needs kafka.sasl.oauthbearer.existingSecret (or clientSecret) holding the client secret" }}
{{- end }}
{{- if and $v.keda.enabled (not $v.keda.authenticationRef) }}
{{- fail "keda.enabled with OAUTHBEARER needs keda.authenticationRef: a TriggerAuthentication of your own with KEDA's oauthbearer parameters" }}
{{- end }}
{{- end }}
{{- if hasKey $v.kafka.config "group.instance.id" }}
{{- fail "kafka.config may not set group.instance.id: every pod would share it; statefulset.staticMembership names each pod's own" }}
{{- end }}
{{- range $name, $_ := $v.extraConfig }}
{{- if has $name (list "BRIDGE_TALON_API_KEY" "BRIDGE_KAFKA_SASL_USERNAME" "BRIDGE_KAFKA_SASL_PASSWORD" "BRIDGE_KAFKA_SSL_KEY_PASSWORD" "BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET") }}
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
The TriggerAuthentication of the KEDA triggers: keda.authenticationRef, or the chart's own when
SASL or TLS is on ("" for none).
*/}}
{{- define "talon-bridge.kedaAuthName" -}}
{{- if .Values.keda.authenticationRef }}
{{- .Values.keda.authenticationRef }}
{{- else if or .Values.kafka.sasl.enabled .Values.kafka.tls.enabled }}
{{- include "talon-bridge.fullname" . }}
{{- end }}
{{- end }}

{{/*
librdkafka SASL mechanism in KEDA's spelling.
*/}}
{{- define "talon-bridge.kedaSasl" -}}
{{- get (dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512") .Values.kafka.sasl.mechanism }}
{{- end }}

{{/*
The worker container's resources: `resources` is per worker process, so the pod asks for
`worker.processes` times each quantity.
*/}}
{{- define "talon-bridge.workerResources" -}}
{{- $n := int .Values.worker.processes -}}
{{- $pod := dict -}}
{{- range $kind, $quantities := .Values.resources -}}
{{- $scaled := dict -}}
{{- range $name, $q := $quantities -}}
{{- $_ := set $scaled $name (include "talon-bridge.scaleQuantity" (list $q $n $kind $name)) -}}
{{- end -}}
{{- $_ := set $pod $kind $scaled -}}
{{- end -}}
{{- toYaml $pod -}}
{{- end -}}

{{/* A Kubernetes quantity times a whole number: "250m" x 2 = "500m", "256Mi" x 2 = "512Mi". */}}
{{- define "talon-bridge.scaleQuantity" -}}
{{- $v := index . 0 -}}
{{- $n := index . 1 -}}
{{- $q := toString $v -}}
{{- if or (kindIs "float64" $v) (kindIs "int" $v) (kindIs "int64" $v) -}}
{{- $f := mulf $v $n -}}
{{- if eq $f (floor $f) -}}
{{- printf "%d" (int64 $f) -}}
{{- else -}}
{{- printf "%dm" (int64 (mulf $f 1000)) -}}
{{- end -}}
{{- else if eq $n 1 -}}
{{- $q -}}
{{- else if regexMatch "^[0-9]+$" $q -}}
{{- mul (atoi $q) $n -}}
{{- else if regexMatch "^[0-9]*\\.[0-9]+$" $q -}}
{{- printf "%dm" (int64 (mulf (float64 $q) 1000 $n)) -}}
{{- else if regexMatch "^[0-9]+(m|k|Ki|Mi|Gi|Ti|M|G|T)$" $q -}}
{{- $unit := regexFind "[a-zA-Z]+$" $q -}}
{{- printf "%d%s" (mul (atoi (trimSuffix $unit $q)) $n) $unit -}}
{{- else -}}
{{- fail (printf "resources.%s.%s: %q cannot be multiplied by worker.processes; give a whole number with a unit, e.g. 500m or 512Mi" (index . 2) (index . 3) $q) -}}
{{- end -}}
{{- end -}}
