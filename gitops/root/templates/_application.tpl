{{- /*
One Application of the app of apps. Arguments (a dict): root (the root context), name,
namespace (its destination), wave (sync wave), sources (a list), and optionally
serverSideApply and skipDryRun (for custom resources whose CRD another application
installs first).
*/ -}}
{{- define "socle.application" -}}
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {{ .name }}
  namespace: argocd
  labels:
    app.kubernetes.io/part-of: socle
  annotations:
    argocd.argoproj.io/sync-wave: {{ .wave | quote }}
spec:
  project: socle
  destination:
    server: https://kubernetes.default.svc
    namespace: {{ .namespace }}
  sources:
    {{- toYaml .sources | nindent 4 }}
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
      - CreateNamespace=true
      {{- if .serverSideApply }}
      - ServerSideApply=true
      {{- end }}
      {{- if .skipDryRun }}
      - SkipDryRunOnMissingResource=true
      {{- end }}
    retry:
      limit: 10
      backoff:
        duration: 10s
        factor: 2
        maxDuration: 5m
{{- end -}}

{{- define "socle.gitSource" -}}
repoURL: {{ required "repository.url is required" .Values.repository.url }}
targetRevision: {{ required "repository.revision is required" .Values.repository.revision }}
{{- end -}}
