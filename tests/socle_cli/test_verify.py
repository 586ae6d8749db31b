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
