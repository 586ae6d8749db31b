{{- define "postgresql.labels" -}}
app.kubernetes.io/name: postgresql
app.kubernetes.io/part-of: socle
{{- end -}}

{{- define "postgresql.selector" -}}
app.kubernetes.io/name: postgresql
{{- end -}}
