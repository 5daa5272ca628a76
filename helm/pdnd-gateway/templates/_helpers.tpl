{{/*
Names and labels.
*/}}
{{- define "pdnd-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pdnd-gateway.fullname" -}}
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

{{- define "pdnd-gateway.instanceLabels" -}}
app.kubernetes.io/name: {{ include "pdnd-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The gateway pods only: Job, CronJob and test pods carry another component, so no Service,
PodDisruptionBudget or NetworkPolicy of the gateway ever selects them. */}}
{{- define "pdnd-gateway.selectorLabels" -}}
{{ include "pdnd-gateway.instanceLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "pdnd-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pdnd-gateway.instanceLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pdnd-gateway
{{- end }}

{{- define "pdnd-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pdnd-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pdnd-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
What the chart refuses to render. Every message says what to set.
*/}}
{{- define "pdnd-gateway.checks" -}}
{{- $cfg := .Values.config }}
{{- $backend := $cfg.state.backend }}
{{- if and (gt (int .Values.replicaCount) 1) (ne $backend "redis") }}
{{- fail (printf "replicaCount is %d but config.state.backend is %q: more than one replica shares quota, replay memory and voucher renewal only through Redis; set config.state.backend: redis and secrets.stateUrl (or replicaCount: 1)" (int .Values.replicaCount) $backend) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (ne $backend "redis") }}
{{- fail (printf "autoscaling.enabled is true but config.state.backend is %q: an HPA runs several replicas, which share state only through Redis; set config.state.backend: redis and secrets.stateUrl" $backend) }}
{{- end }}
{{- if and (eq $backend "redis") (not .Values.secrets.stateUrl.name) }}
{{- fail "config.state.backend is redis: set secrets.stateUrl.name (and .key) to the Secret holding the Redis URL" }}
{{- end }}
{{- $multi := or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}
{{- $dbUrl := dig "url" "" $cfg.database }}
{{- if and $multi (hasPrefix "sqlite:" $dbUrl) }}
{{- fail "config.database.url is SQLite, which each pod would keep on its own disk: with more than one replica (or an HPA) use PostgreSQL (secrets.databaseUrl)" }}
{{- end }}
{{- if and $dbUrl .Values.secrets.databaseUrl.name }}
{{- fail "set either config.database.url or secrets.databaseUrl, not both" }}
{{- end }}
{{- if not (or $dbUrl .Values.secrets.databaseUrl.name) }}
{{- fail "no database: set secrets.databaseUrl (PostgreSQL URL in a Secret) or, for a URL without password, config.database.url" }}
{{- end }}
{{- $auditUrl := dig "url" "" $cfg.audit }}
{{- if and $auditUrl .Values.secrets.auditUrl.name }}
{{- fail "set either config.audit.url or secrets.auditUrl, not both" }}
{{- end }}
{{- if not (or $auditUrl .Values.secrets.auditUrl.name) }}
{{- fail "no audit trail: set secrets.auditUrl (PostgreSQL URL in a Secret) or, for a URL without password, config.audit.url" }}
{{- end }}
{{- if and $multi (hasPrefix "sqlite:" $auditUrl) }}
{{- fail "config.audit.url is SQLite: with more than one replica (or an HPA) use PostgreSQL (secrets.auditUrl)" }}
{{- end }}
{{- if not .Values.secrets.auditHmacSecret.name }}
{{- fail "set secrets.auditHmacSecret.name: the audit trail's HMAC secret comes from a Secret, never from values" }}
{{- end }}
{{- if and (hasKey $cfg "client") (not .Values.secrets.pdndClientKey.name) }}
{{- fail "config.client is set: set secrets.pdndClientKey.name to the Secret holding the client's private key" }}
{{- end }}
{{- if and (dig "api_client_id" "" $cfg.pdnd) (not .Values.secrets.pdndApiKey.name) }}
{{- fail "config.pdnd.api_client_id is set: set secrets.pdndApiKey.name to the Secret holding that client's private key" }}
{{- end }}
{{- if .Values.secrets.internalTls.clientCaKey }}
{{- fail "secrets.internalTls.clientCaKey makes the internal listener mTLS, which the kubelet's probes on /livez and /readyz cannot pass: leave it empty (internal callers still need an API key) and confine the port with networkPolicy.internalFrom" }}
{{- end }}
{{- if and (not .Values.secrets.internalTls.name) (not $cfg.server.internal_allow_plaintext_non_loopback) }}
{{- fail "the internal listener (fruizioni, API keys) has no TLS: set secrets.internalTls.name, or, where networkPolicy confines it, config.server.internal_allow_plaintext_non_loopback: true" }}
{{- end }}
{{- if not (or .Values.purposes.inline .Values.purposes.existing.name) }}
{{- fail "no purposes file: set purposes.inline (TOML [[purpose]] records) or purposes.existing.name" }}
{{- end }}
{{- if and .Values.tracingSync.enabled (not (hasKey $cfg "tracing")) }}
{{- fail "tracingSync.enabled needs config.tracing (service_url, purpose_id)" }}
{{- end }}
{{- $grace := int .Values.lifecycle.terminationGracePeriodSeconds }}
{{- $needed := include "pdnd-gateway.drainSeconds" . | int }}
{{- if and (gt $grace 0) (le $grace $needed) }}
{{- fail (printf "lifecycle.terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + config.server.shutdown_delay_secs + config.server.shutdown_timeout_secs (%d): the kubelet would kill a draining gateway" $grace $needed) }}
{{- end }}
{{- end }}

{{/* The longest a pod takes from deletion to exit: preStop sleep, then the gateway's own delay
(/readyz 503, listeners still open) and its bounded drain (defaults 0 and 30 as in the binary). */}}
{{- define "pdnd-gateway.drainSeconds" -}}
{{- $s := .Values.config.server }}
{{- add (int .Values.lifecycle.preStopSleepSeconds) (int (dig "shutdown_delay_secs" 0 $s)) (int (dig "shutdown_timeout_secs" 30 $s)) }}
{{- end }}

{{- define "pdnd-gateway.terminationGracePeriodSeconds" -}}
{{- $grace := int .Values.lifecycle.terminationGracePeriodSeconds }}
{{- if gt $grace 0 }}{{ $grace }}{{ else }}{{ add (include "pdnd-gateway.drainSeconds" . | int) 10 }}{{ end }}
{{- end }}

{{/*
Where the chart mounts what. One place, so the configuration and the volumes agree.
*/}}
{{- define "pdnd-gateway.paths" -}}
configDir: /etc/pdnd-gateway/config
configFile: /etc/pdnd-gateway/config/gateway.toml
purposesDir: /etc/pdnd-gateway/purposes
purposesFile: /etc/pdnd-gateway/purposes/purposes.toml
trustDir: /etc/pdnd-gateway/modi-trust
trustFile: /etc/pdnd-gateway/modi-trust/trusted-cas.pem
clientKeyDir: /run/secrets/pdnd-client
clientKeyFile: /run/secrets/pdnd-client/key.pem
apiKeyDir: /run/secrets/pdnd-api-client
apiKeyFile: /run/secrets/pdnd-api-client/key.pem
modiDir: /run/secrets/modi-signing
modiKeyFile: /run/secrets/modi-signing/signing-key.pem
modiChainFile: /run/secrets/modi-signing/signing-chain.pem
tlsDir: /run/secrets/internal-tls
tlsCertFile: /run/secrets/internal-tls/tls.crt
tlsKeyFile: /run/secrets/internal-tls/tls.key
sqliteDir: /var/lib/pdnd-gateway
{{- end }}

{{/*
The gateway configuration as a dict: the operator's `config` with what the chart owns on top.
*/}}
{{- define "pdnd-gateway.configDict" -}}
{{- $p := include "pdnd-gateway.paths" . | fromYaml }}
{{- $cfg := deepCopy .Values.config }}
{{- $server := dict "public_listen" (printf "0.0.0.0:%d" (int .Values.containerPorts.public)) "internal_listen" (printf "0.0.0.0:%d" (int .Values.containerPorts.internal)) }}
{{- if .Values.secrets.internalTls.name }}
{{- $_ := set $server "internal_tls" (dict "cert_file" $p.tlsCertFile "key_file" $p.tlsKeyFile) }}
{{- end }}
{{- if include "pdnd-gateway.hasKeyFiles" . }}
{{- $_ := set $server "allow_group_readable_keys" true }}
{{- end }}
{{- $_ := set $cfg "server" (mergeOverwrite (default dict $cfg.server) $server) }}
{{- if .Values.secrets.pdndApiKey.name }}
{{- $_ := set $cfg "pdnd" (mergeOverwrite (default dict $cfg.pdnd) (dict "api_key_file" $p.apiKeyFile)) }}
{{- end }}
{{- if hasKey $cfg "client" }}
{{- $_ := set $cfg.client "key_file" $p.clientKeyFile }}
{{- end }}
{{- $modi := default dict $cfg.modi }}
{{- if .Values.secrets.modiSigning.name }}
{{- $_ := set $modi "signing_key_file" $p.modiKeyFile }}
{{- $_ := set $modi "certificate_chain_file" $p.modiChainFile }}
{{- end }}
{{- if .Values.trustStore.name }}
{{- $_ := set $modi "trust_store_file" $p.trustFile }}
{{- end }}
{{- if $modi }}
{{- $_ := set $cfg "modi" $modi }}
{{- end }}
{{- $_ := set $cfg "purposes" (dict "file" $p.purposesFile) }}
{{- if include "pdnd-gateway.migrationJob" . }}
{{- $_ := set $cfg "database" (mergeOverwrite (default dict $cfg.database) (dict "migrate_on_start" false)) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{- define "pdnd-gateway.hasKeyFiles" -}}
{{- $s := .Values.secrets }}
{{- if or $s.pdndClientKey.name $s.pdndApiKey.name $s.modiSigning.name $s.internalTls.name $s.extraFiles }}true{{ end }}
{{- end }}

{{/*
TOML rendering. Helm's toToml prints every number as a float (2 -> 2.0), which the gateway's
integer keys refuse, so the chart renders TOML itself: integers as integers, strings as JSON
strings (valid TOML basic strings), tables after plain keys, lists of tables as [[...]].
*/}}
{{- define "pdnd-gateway.toml.value" -}}
{{- $v := . }}
{{- $k := kindOf $v }}
{{- if eq $k "string" }}{{ toJson $v }}
{{- else if eq $k "bool" }}{{ $v }}
{{- else if eq $k "float64" }}{{ if eq (float64 (int64 $v)) $v }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (eq $k "int") (eq $k "int64") }}{{ $v }}
{{- else if eq $k "slice" }}[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "pdnd-gateway.toml.value" $e }}{{ end }}]
{{- else }}{{ fail (printf "cannot render a %s as a TOML value" $k) }}
{{- end }}
{{- end }}

{{- define "pdnd-gateway.toml.isTableList" -}}
{{- if and (eq (kindOf .) "slice") (gt (len .) 0) }}{{ if eq (kindOf (first .)) "map" }}true{{ end }}{{ end }}
{{- end }}

{{/* Renders the table at .path (a list of key names) holding the map .table. */}}
{{- define "pdnd-gateway.toml.table" -}}
{{- $path := .path }}
{{- $t := .table }}
{{- $name := join "." $path }}
{{- $plain := list }}
{{- range $k := keys $t | sortAlpha }}
{{- $v := get $t $k }}
{{- if and (not (kindIs "invalid" $v)) (ne (kindOf $v) "map") (not (include "pdnd-gateway.toml.isTableList" $v)) }}
{{- $plain = append $plain $k }}
{{- end }}
{{- end }}
{{- if $plain }}
{{- if $name }}
[{{ $name }}]
{{- end }}
{{- range $k := $plain }}
{{ $k }} = {{ include "pdnd-gateway.toml.value" (get $t $k) }}
{{- end }}
{{ end }}
{{- range $k := keys $t | sortAlpha }}
{{- $v := get $t $k }}
{{- if eq (kindOf $v) "map" }}
{{- include "pdnd-gateway.toml.table" (dict "path" (append $path $k) "table" $v) }}
{{- else if include "pdnd-gateway.toml.isTableList" $v }}
{{- range $e := $v }}
[[{{ join "." (append $path $k) }}]]
{{- range $ek := keys $e | sortAlpha }}
{{- $ev := get $e $ek }}
{{- if not (kindIs "invalid" $ev) }}
{{ $ek }} = {{ include "pdnd-gateway.toml.value" $ev }}
{{- end }}
{{- end }}
{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pdnd-gateway.configToml" -}}
# Rendered by the pdnd-gateway chart from its values; do not edit in the cluster.
{{ include "pdnd-gateway.toml.table" (dict "path" list "table" (include "pdnd-gateway.configDict" . | fromYaml)) }}
{{- end }}

{{/*
Environment of every gateway container: secret strings by secretKeyRef, never inlined.
*/}}
{{- define "pdnd-gateway.env" -}}
{{- $s := .Values.secrets }}
{{- range $pair := list (list "PDNDGW_DATABASE__URL" $s.databaseUrl) (list "PDNDGW_AUDIT__URL" $s.auditUrl) (list "PDNDGW_AUDIT__HMAC_SECRET" $s.auditHmacSecret) (list "PDNDGW_STATE__URL" $s.stateUrl) }}
{{- $ref := index $pair 1 }}
{{- if $ref.name }}
- name: {{ index $pair 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Volumes (files) of every gateway container: the configuration, the purposes, and each Secret
referenced, mounted read-only with mode 0440 (readable through fsGroup).
*/}}
{{- define "pdnd-gateway.volumes" -}}
{{- $p := include "pdnd-gateway.paths" .root | fromYaml }}
{{- $s := .root.Values.secrets }}
- name: config
  configMap:
    name: {{ .configMapName }}
    items:
      - key: gateway.toml
        path: gateway.toml
- name: purposes
{{- if .root.Values.purposes.existing.name }}
{{- if eq .root.Values.purposes.existing.kind "Secret" }}
  secret:
    secretName: {{ .root.Values.purposes.existing.name }}
    defaultMode: 0440
{{- else }}
  configMap:
    name: {{ .root.Values.purposes.existing.name }}
{{- end }}
    items:
      - key: {{ .root.Values.purposes.existing.key }}
        path: purposes.toml
{{- else }}
  configMap:
    name: {{ .configMapName }}
    items:
      - key: purposes.toml
        path: purposes.toml
{{- end }}
{{- if .root.Values.trustStore.name }}
- name: modi-trust
{{- if eq .root.Values.trustStore.kind "Secret" }}
  secret:
    secretName: {{ .root.Values.trustStore.name }}
    defaultMode: 0440
{{- else }}
  configMap:
    name: {{ .root.Values.trustStore.name }}
{{- end }}
    items:
      - key: {{ .root.Values.trustStore.key }}
        path: trusted-cas.pem
{{- end }}
{{- if $s.pdndClientKey.name }}
- name: pdnd-client
  secret:
    secretName: {{ $s.pdndClientKey.name }}
    defaultMode: 0440
    items:
      - key: {{ $s.pdndClientKey.key }}
        path: key.pem
{{- end }}
{{- if $s.pdndApiKey.name }}
- name: pdnd-api-client
  secret:
    secretName: {{ $s.pdndApiKey.name }}
    defaultMode: 0440
    items:
      - key: {{ $s.pdndApiKey.key }}
        path: key.pem
{{- end }}
{{- if $s.modiSigning.name }}
- name: modi-signing
  secret:
    secretName: {{ $s.modiSigning.name }}
    defaultMode: 0440
    items:
      - key: {{ $s.modiSigning.keyKey }}
        path: signing-key.pem
      - key: {{ $s.modiSigning.chainKey }}
        path: signing-chain.pem
{{- end }}
{{- if $s.internalTls.name }}
- name: internal-tls
  secret:
    secretName: {{ $s.internalTls.name }}
    defaultMode: 0440
    items:
      - key: {{ $s.internalTls.certKey }}
        path: tls.crt
      - key: {{ $s.internalTls.keyKey }}
        path: tls.key
{{- end }}
{{- range $i, $x := $s.extraFiles }}
- name: extra-{{ $i }}
  secret:
    secretName: {{ $x.name }}
    defaultMode: 0440
{{- end }}
{{- if include "pdnd-gateway.sqlite" .root }}
- name: sqlite
  emptyDir: {}
{{- end }}
{{- end }}

{{- define "pdnd-gateway.sqlite" -}}
{{- if or (hasPrefix "sqlite:" (dig "url" "" .Values.config.database)) (hasPrefix "sqlite:" (dig "url" "" .Values.config.audit)) }}true{{ end }}
{{- end }}

{{- define "pdnd-gateway.volumeMounts" -}}
{{- $p := include "pdnd-gateway.paths" . | fromYaml }}
{{- $s := .Values.secrets }}
- name: config
  mountPath: {{ $p.configDir }}
  readOnly: true
- name: purposes
  mountPath: {{ $p.purposesDir }}
  readOnly: true
{{- if .Values.trustStore.name }}
- name: modi-trust
  mountPath: {{ $p.trustDir }}
  readOnly: true
{{- end }}
{{- if $s.pdndClientKey.name }}
- name: pdnd-client
  mountPath: {{ $p.clientKeyDir }}
  readOnly: true
{{- end }}
{{- if $s.pdndApiKey.name }}
- name: pdnd-api-client
  mountPath: {{ $p.apiKeyDir }}
  readOnly: true
{{- end }}
{{- if $s.modiSigning.name }}
- name: modi-signing
  mountPath: {{ $p.modiDir }}
  readOnly: true
{{- end }}
{{- if $s.internalTls.name }}
- name: internal-tls
  mountPath: {{ $p.tlsDir }}
  readOnly: true
{{- end }}
{{- range $i, $x := $s.extraFiles }}
- name: extra-{{ $i }}
  mountPath: {{ $x.mountPath }}
  readOnly: true
{{- end }}
{{- if include "pdnd-gateway.sqlite" . }}
- name: sqlite
  mountPath: {{ $p.sqliteDir }}
{{- end }}
{{- end }}

{{/* Pod-level securityContext: fsGroup makes the 0440 secret files readable by the gateway. */}}
{{- define "pdnd-gateway.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "pdnd-gateway.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
A pod spec running one gateway command to completion (migration Job, CronJobs).
*/}}
{{- define "pdnd-gateway.commandPod" -}}
{{- $p := include "pdnd-gateway.paths" .root | fromYaml }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- if .serviceAccount }}
serviceAccountName: {{ include "pdnd-gateway.serviceAccountName" .root }}
{{- end }}
restartPolicy: Never
securityContext:
  {{- include "pdnd-gateway.podSecurityContext" .root | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .name }}
    image: {{ include "pdnd-gateway.image" .root }}
    imagePullPolicy: {{ .root.Values.image.pullPolicy }}
    args: {{ toJson (concat .args (list "--config" $p.configFile)) }}
    env:
      {{- include "pdnd-gateway.env" .root | nindent 6 }}
    securityContext:
      {{- include "pdnd-gateway.containerSecurityContext" .root | nindent 6 }}
    resources:
      {{- toYaml .root.Values.resources | nindent 6 }}
    volumeMounts:
      {{- include "pdnd-gateway.volumeMounts" .root | nindent 6 }}
volumes:
  {{- include "pdnd-gateway.volumes" (dict "root" .root "configMapName" .configMapName) | nindent 2 }}
{{- end }}

{{/* The migration hook runs unless disabled or the store is SQLite (a Job's own disk). */}}
{{- define "pdnd-gateway.migrationJob" -}}
{{- if and .Values.migration.enabled (not (include "pdnd-gateway.sqlite" .)) }}true{{ end }}
{{- end }}
