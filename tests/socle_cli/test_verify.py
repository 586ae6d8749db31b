"""The Go/No-Go report: a check that cannot run is never Go; the whole is No-Go on any."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from socle_cli.verify import (
    CheckResult,
    NotChecked,
    Verdict,
    VerifyContext,
    open_tcp_ports,
    overall,
    render_markdown,
    run_checks,
    write_report,
)

WHEN = datetime(2026, 11, 28, 2, 30, tzinfo=UTC)


def passing(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 1: something that holds."""
    yield CheckResult("1 baseline", "holds", Verdict.GO, "seen")


def unreachable(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 3: node Ready."""
    raise NotChecked("no cluster yet: phase 3 is not deployed")


def crashing(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 5: a test alert arrives."""
    yield CheckResult("5 monitoring", "first part", Verdict.GO, "seen")
    raise ConnectionError("Alertmanager did not answer")


def context() -> VerifyContext:
    return VerifyContext(host_name="vps", data={}, node=None)


def test_a_check_that_cannot_run_says_why_and_is_never_go() -> None:
    results = run_checks(context(), [("1", passing), ("3", unreachable), ("5", crashing)])

    assert [(r.check, r.verdict) for r in results] == [
        ("holds", Verdict.GO),
        ("node Ready", Verdict.NOT_CHECKED),
        ("first part", Verdict.GO),
        ("a test alert arrives", Verdict.NOT_CHECKED),
    ]
    assert results[1].evidence == "no cluster yet: phase 3 is not deployed"
    assert results[3].evidence == "ConnectionError: Alertmanager did not answer"
    assert overall(results) is Verdict.GO


def test_one_no_go_makes_the_whole_no_go_and_the_report_says_so(tmp_path: Path) -> None:
    results = [
        CheckResult("1 baseline", "public TCP ports", Verdict.NO_GO, "open [22, 8080|x]"),
        CheckResult("3 k3s", "node Ready", Verdict.NOT_CHECKED, "a stand-in"),
    ]

    report = render_markdown("vps", results, WHEN)

    assert overall(results) is Verdict.NO_GO
    assert "# socle verify: vps, 2026-11-28 02:30:00 UTC" in report
    assert "**No-Go** (1 not checked)" in report
    assert "| 1 baseline | public TCP ports | No-Go | open [22, 8080\\|x] |" in report
    kept = write_report(tmp_path, "vps", report, WHEN)
    assert kept.name == "verify-vps-20261128T023000Z.md" and kept.read_text() == report


def test_the_port_scan_finds_a_listener_and_nothing_else() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        closed = port + 1 if port < 65535 else port - 1

        assert open_tcp_ports("127.0.0.1", [port, closed]) == [port]


OFFSITE_METRICS = """\
socle_offsite_newest_timestamp_seconds{kind="postgres",subject="app"} 9000
socle_offsite_rpo_target_seconds{kind="postgres"} 93600
socle_offsite_drill_last_result{kind="postgres",subject="app"} %(result)s
socle_offsite_drill_last_duration_seconds{kind="postgres",subject="app"} 42.5
socle_rto_target_seconds{kind="postgres"} 600
"""


def with_metrics(text: str, now: int = 10000) -> VerifyContext:
    """A context whose agent metrics (as `agent_metrics` reads them) are ``text``."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    ctx = context()
    ctx.cache["metrics"] = (samples, now)
    return ctx


def test_off_site_copies_and_drills_are_checked_where_the_agent_publishes_them() -> None:
    from socle_cli.verify import check_offsite

    passing = run_checks(with_metrics(OFFSITE_METRICS % {"result": 1}), [("7", check_offsite)])
    failing = run_checks(with_metrics(OFFSITE_METRICS % {"result": 0}), [("7", check_offsite)])
    absent = run_checks(with_metrics("socle_agent_up 1\n"), [("7", check_offsite)])

    assert [(r.check, r.verdict) for r in passing] == [
        ("off-site postgres/app backup within the RPO", Verdict.GO),
        ("off-site postgres/app drill within the RTO", Verdict.GO),
    ]
    assert passing[1].evidence == (
        "last off-site drill passed in 42.5 s (fetch included), RTO 600 s"
    )
    assert failing[1].verdict is Verdict.NO_GO and "FAILED" in failing[1].evidence
    assert absent[0].verdict is Verdict.NOT_CHECKED
    assert absent[0].evidence.startswith("the agent publishes no off-site metrics")
