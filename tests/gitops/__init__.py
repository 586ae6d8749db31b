"""Tests of what Argo CD syncs (gitops/)."""
