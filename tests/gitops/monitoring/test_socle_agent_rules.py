"""The agent's alert rules: valid for Prometheus, and each one tested firing and silent."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "gitops" / "monitoring" / "rules" / "socle-agent.rules.yaml"
RULE_TESTS = Path(__file__).with_name("socle-agent.rules.test.yaml")
# the metric names agreed for the agent, plus Prometheus's own `up`
AGENT_METRICS = {
    "socle_agent_info",
    "socle_agent_up",
    "socle_job_last_success_timestamp_seconds",
    "socle_job_last_run_timestamp_seconds",
    "socle_job_last_duration_seconds",
    "socle_job_last_size_bytes",
    "socle_job_last_status",
    "socle_job_failures_total",
    "socle_backup_retained",
    "socle_backup_newest_timestamp_seconds",
    "socle_backup_expected",
    "socle_backup_orphans_removed_total",
    "socle_rpo_target_seconds",
    "socle_rto_target_seconds",
    "socle_drill_last_result",
    "socle_drill_last_duration_seconds",
    "socle_disk_free_bytes",
    "socle_disk_size_bytes",
    "socle_disk_free_ratio",
    "socle_k3s_datastore_bytes",
    "socle_offsite_rpo_target_seconds",
    "socle_offsite_newest_timestamp_seconds",
    "socle_offsite_newest_backup_info",
    "socle_offsite_last_copy_timestamp_seconds",
    "socle_offsite_last_copy_duration_seconds",
    "socle_offsite_last_copy_size_bytes",
    "socle_offsite_last_copy_added_bytes",
    "socle_offsite_pending_backups",
    "socle_offsite_repository_bytes",
    "socle_offsite_check_last_result",
    "socle_offsite_check_last_timestamp_seconds",
    "socle_offsite_check_last_duration_seconds",
    "socle_offsite_drill_last_result",
    "socle_offsite_drill_last_duration_seconds",
    "socle_offsite_drill_last_timestamp_seconds",
}


def promtool() -> str:
    """The promtool binary; its absence fails the test (CI installs Debian's prometheus)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install it (Debian package `prometheus`)")
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=300, check=False
    )


def alerting_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_file_passes_promtool_check() -> None:
    done = run_promtool("check", "rules", str(RULES))

    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass_with_promtool() -> None:
    done = run_promtool("test", "rules", str(RULE_TESTS))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_rule_waits_has_a_severity_and_says_what_is_wrong() -> None:
    rules = alerting_rules()

    assert rules
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no `for`"
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name


def test_every_rule_is_tested_firing_and_not_firing() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())
    fires: set[str] = set()
    silent: set[str] = set()
    for case in cases["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])

    names = {rule["alert"] for rule in alerting_rules()}
    assert names - fires == set(), "never tested firing"
    assert names - silent == set(), "never tested not firing"


def test_rules_use_only_the_agents_metric_names() -> None:
    used = set()
    for rule in alerting_rules():
        used |= set(re.findall(r"\bsocle_[a-z0-9_]+", rule["expr"]))

    assert used
    assert used <= AGENT_METRICS, used - AGENT_METRICS
    assert {
        "socle_backup_newest_timestamp_seconds",
        "socle_rpo_target_seconds",
        "socle_drill_last_result",
        "socle_rto_target_seconds",
        "socle_disk_free_ratio",
        "socle_k3s_datastore_bytes",
        "socle_offsite_newest_timestamp_seconds",
        "socle_offsite_rpo_target_seconds",
        "socle_offsite_check_last_result",
        "socle_offsite_drill_last_result",
        "socle_offsite_drill_last_duration_seconds",
    } <= used


def test_rules_read_the_agents_task_label_and_leave_job_to_the_scrape() -> None:
    """The agent's job names are in `task`; `job` is only the scrape job, "socle-agent"."""
    text = RULES.read_text()
    rules = alerting_rules()

    assert "exported_job" not in text
    for rule in rules:
        for selector in re.findall(r"\bjob\s*=~?\s*\"([^\"]*)\"", rule["expr"]):
            assert selector == "socle-agent", rule["alert"]
    [failing] = [rule for rule in rules if "socle_job_last_status" in rule["expr"]]
    assert "$labels.task" in failing["annotations"]["summary"]
