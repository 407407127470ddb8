{{/* Names, labels and the Ray cluster spec shared by the RayJob and the RayCluster. */}}

{{- define "instructflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "instructflow.fullname" -}}
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

{{- define "instructflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "instructflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "instructflow.labels" -}}
{{ include "instructflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The claim that holds the output, or nothing when output goes to an object store. */}}
{{- define "instructflow.claimName" -}}
{{- if not .Values.output.uri }}
{{- .Values.output.pvc.existingClaim | default (printf "%s-output" (include "instructflow.fullname" .)) }}
{{- end }}
{{- end }}

{{- define "instructflow.outputDir" -}}
{{- .Values.output.uri | default (printf "%s/%s" (trimSuffix "/" .Values.output.mountPath) .Values.output.subPath) }}
{{- end }}

{{/* The run config with output_dir and the novelty resource filled in from the values. */}}
{{- define "instructflow.runConfig" -}}
{{- $cfg := deepCopy .Values.runConfig }}
{{- $run := get $cfg "run" | default dict }}
{{- $_ := set $run "output_dir" (include "instructflow.outputDir" .) }}
{{- $_ = set $cfg "run" $run }}
{{- if .Values.embedding.enabled }}
{{- $novelty := get $cfg "novelty" | default dict }}
{{- $_ = set $novelty "resource" .Values.embedding.resourceName }}
{{- $_ = set $cfg "novelty" $novelty }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{- define "instructflow.image" -}}
{{- $image := mergeOverwrite (deepCopy .root.Values.image) (.override | default dict) -}}
image: {{ printf "%s:%s" $image.repository $image.tag | quote }}
imagePullPolicy: {{ $image.pullPolicy }}
{{- end }}

{{/* Environment shared by every Ray container, then the group's own. */}}
{{- define "instructflow.env" -}}
{{- $secret := .root.Values.teacher.apiKeySecret }}
{{- $env := concat .root.Values.common.containerEnv (.group.containerEnv | default list) }}
{{- if or $env $secret.name -}}
env:
{{- with $env }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- if $secret.name }}
  - name: {{ $secret.env }}
    valueFrom:
      secretKeyRef:
        name: {{ $secret.name }}
        key: {{ $secret.key }}
{{- end }}
{{- end }}
{{- end }}

{{/*
One pod template. Arguments: root (the chart context), group (the head/worker/embedding values),
component, container (container name), ports (bool: the head's service ports), mounts (bool: config
and output volumes), gpus (int).
*/}}
{{- define "instructflow.podTemplate" -}}
{{- $root := .root }}
{{- $group := .group }}
{{- $claim := include "instructflow.claimName" $root -}}
metadata:
  labels:
    {{- include "instructflow.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $group.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $group.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.serviceAccountName }}
  serviceAccountName: {{ . }}
  {{- end }}
  {{- if eq .component "head" }}
  # Room for `ray job stop` to drain: the stop wait plus a margin before the kubelet kills the pod.
  terminationGracePeriodSeconds: {{ add $root.Values.rayJob.stopWaitTimeS 30 }}
  {{- end }}
  containers:
    - name: {{ .container }}
      {{- include "instructflow.image" (dict "root" $root "override" $group.image) | nindent 6 }}
      ports:
        {{- if .ports }}
        - {containerPort: 6379, name: gcs}
        - {containerPort: 8265, name: dashboard}
        - {containerPort: 10001, name: client}
        {{- end }}
        - {containerPort: 8080, name: metrics}
      {{- include "instructflow.env" (dict "root" $root "group" $group) | nindent 6 }}
      resources:
        {{- $resources := deepCopy $group.resources }}
        {{- if .gpus }}
        {{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" (toString .gpus)) ($resources.limits | default dict)) }}
        {{- end }}
        {{- toYaml $resources | nindent 8 }}
      volumeMounts:
        # Ray's object store lives in /dev/shm; the container default (64 MiB) is far too small.
        - {name: shm, mountPath: /dev/shm}
        {{- if .mounts }}
        - {name: run-config, mountPath: /config, readOnly: true}
        {{- if $claim }}
        - {name: output, mountPath: {{ $root.Values.output.mountPath }}}
        {{- end }}
        {{- end }}
  volumes:
    - name: shm
      emptyDir: {medium: Memory}
    {{- if .mounts }}
    - name: run-config
      configMap:
        name: {{ include "instructflow.fullname" $root }}-run-config
    {{- if $claim }}
    - name: output
      persistentVolumeClaim:
        claimName: {{ $claim }}
    {{- end }}
    {{- end }}
  {{- with $group.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Checks JSON Schema cannot express: replica bounds, and a stop wait longer than the drain. */}}
{{- define "instructflow.checks" -}}
{{- range $g := list .Values.worker .Values.embedding }}
{{- if or (gt (int $g.minReplicas) (int $g.replicas)) (gt (int $g.replicas) (int $g.maxReplicas)) }}
{{- fail (printf "worker group %s: need minReplicas <= replicas <= maxReplicas" $g.groupName) }}
{{- end }}
{{- end }}
{{- $drain := dig "run" "drain_timeout_s" 30 .Values.runConfig }}
{{- if le (int .Values.rayJob.stopWaitTimeS) (int $drain) }}
{{- fail (printf "rayJob.stopWaitTimeS (%v) must exceed runConfig.run.drain_timeout_s (%v) or `ray job stop` kills the drain" .Values.rayJob.stopWaitTimeS $drain) }}
{{- end }}
{{- end }}

{{/* The RayCluster spec: used as RayJob.spec.rayClusterSpec and as RayCluster.spec. */}}
{{- define "instructflow.rayClusterSpec" -}}
{{- $v := .Values -}}
{{- include "instructflow.checks" . -}}
rayVersion: {{ $v.rayVersion | quote }}
{{- if $v.auth.mode }}
authOptions:
  mode: {{ $v.auth.mode }}
{{- end }}
enableInTreeAutoscaling: {{ $v.autoscaler.enabled }}
{{- if $v.autoscaler.enabled }}
autoscalerOptions:
  version: {{ $v.autoscaler.version }}
  upscalingMode: {{ $v.autoscaler.upscalingMode }}
  idleTimeoutSeconds: {{ $v.autoscaler.idleTimeoutSeconds }}
  resources:
    {{- toYaml $v.autoscaler.resources | nindent 4 }}
  {{- with $v.autoscaler.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
headGroupSpec:
  rayStartParams:
    {{- toYaml $v.head.rayStartParams | nindent 4 }}
  template:
    {{- include "instructflow.podTemplate" (dict "root" . "group" $v.head "component" "head" "container" "ray-head" "ports" true "mounts" true "gpus" 0) | nindent 4 }}
workerGroupSpecs:
  - groupName: {{ $v.worker.groupName }}
    replicas: {{ $v.worker.replicas }}
    minReplicas: {{ $v.worker.minReplicas }}
    maxReplicas: {{ $v.worker.maxReplicas }}
    rayStartParams:
      {{- toYaml ($v.worker.rayStartParams | default dict) | nindent 6 }}
    template:
      {{- include "instructflow.podTemplate" (dict "root" . "group" $v.worker "component" "worker" "container" "ray-worker" "ports" false "mounts" true "gpus" 0) | nindent 6 }}
  {{- if $v.embedding.enabled }}
  {{- $e := $v.embedding }}
  - groupName: {{ $e.groupName }}
    replicas: {{ $e.replicas }}
    minReplicas: {{ $e.minReplicas }}
    maxReplicas: {{ $e.maxReplicas }}
    rayStartParams:
      {{- /* KubeRay's documented form for custom resources: "{\"name\": n}" with the outer quotes. */}}
      {{- $custom := dict $e.resourceName (int $e.slots) | toJson | replace "\"" "\\\"" }}
      {{- $params := merge (dict "num-cpus" "0" "resources" (printf "\"%s\"" $custom)) ($e.rayStartParams | default dict) }}
      {{- toYaml $params | nindent 6 }}
    template:
      {{- include "instructflow.podTemplate" (dict "root" . "group" $e "component" "embedding" "container" "ray-worker" "ports" false "mounts" false "gpus" $e.gpus) | nindent 6 }}
  {{- end }}
{{- end }}
