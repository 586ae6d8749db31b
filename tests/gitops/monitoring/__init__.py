"""Tests of the monitoring component: alert rules."""
