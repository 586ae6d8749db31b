"""The alert path for real: agent -> Prometheus -> Alertmanager -> mail and heartbeat.

Prometheus and Alertmanager (Debian's packages) run here with what the cluster gets:
the rules rendered from gitops/ (the agent's and the platform's PrometheusRules, and
kube-prometheus-stack's Watchdog), the agent's scrape job and Alertmanager's route,
receivers, inhibitions and mail template rendered by kube-prometheus-stack from socle's
values, with the inventory's settings pointing at local receivers. Only time is scaled
down: scrapes and evaluations every second, the rules' `for` divided by 100, grouping in
seconds; the repeat interval stays far longer than an incident.

A real agent (`socle-agent run`) backs up a real PostgreSQL with a wrong password, so its
backups fail; the mail arrives at a real SMTP server (aiosmtpd). The Watchdog heartbeat
arrives at a local HTTP receiver standing for the external dead man's switch.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.message
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from socle.alertmanager_api import AlertmanagerApi, is_maintenance
from socle.gitops_values import root_values
from socle_cli.main import main as socle_main
from tests.agent.conftest import AGENT, config_text, make_cluster
from tests.agent.pgcluster import PgCluster, free_port
from tests.gitops.conftest import prod_data, render_versions
from tests.gitops.render import Renderer

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
FOR_SCALE = 100
# No rule may fire before the first scrapes: `for` is never below this.
MIN_FOR_SECONDS = 3
# An incident lasts this many evaluations (1 s each): many, and far below the repeat interval.
INCIDENT_CYCLES = 12


@dataclass
class Inbox:
    """Mails the SMTP server received."""

    messages: list[email.message.Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def subjects(self) -> list[str]:
        with self.lock:
            return [str(m["Subject"]) for m in self.messages]

    def about(self, alertname: str) -> list[email.message.Message]:
        with self.lock:
            return [m for m in self.messages if f"] {alertname}" in str(m["Subject"])]

    def body(self, message: email.message.Message) -> str:
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                return payload.decode()
        raise AssertionError("no text part")


class _Collect:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.inbox.lock:
            self.inbox.messages.append(BytesParser().parsebytes(envelope.content))
        return "250 OK"


@dataclass
class Heartbeats:
    """Pings the dead man's switch received: the time and the alert names of each."""

    pings: list[tuple[float, list[str]]] = field(default_factory=list)

    def count(self) -> int:
        return len(self.pings)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def scaled(duration: str) -> str:
    seconds = sum(
        int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"(\d+)([smh])", duration)
    )
    return f"{max(MIN_FOR_SECONDS, seconds // FOR_SCALE)}s"


@dataclass
class Stack:
    """The running alert path and what it delivers."""

    inbox: Inbox
    heartbeats: Heartbeats
    alertmanager_url: str
    prometheus_url: str
    password_file: Path
    pg: PgCluster
    processes: dict[str, subprocess.Popen[bytes]]
    config: dict[str, Any]

    def api(self) -> AlertmanagerApi:
        return AlertmanagerApi(self.alertmanager_url)

    def post(self, alertname: str, severity: str, lasting: float = 60.0, **labels: str) -> None:
        now = dt.datetime.now(dt.UTC)
        self.api().post_alerts(
            [
                {
                    "labels": {"alertname": alertname, "severity": severity, **labels},
                    "annotations": {
                        "summary": f"{alertname} (posted by the test)",
                        "description": "test",
                    },
                    "startsAt": now.isoformat(),
                    "endsAt": (now + dt.timedelta(seconds=lasting)).isoformat(),
                }
            ]
        )


def alerting_values(smtp_port: int, heartbeat_port: int, agent_port: int) -> dict[str, Any]:
    """Production's inventory data, pointing at this machine's receivers, time scaled."""
    data = prod_data()
    data["wireguard_address"] = "127.0.0.1/8"
    data["agent_settings"] = {
        **data["agent_settings"],
        "metrics": {"listen": "127.0.0.1", "port": agent_port},
    }
    data["alerting"] = {
        "smarthost": f"127.0.0.1:{smtp_port}",
        "from": "alertmanager@node.test",
        "to": ["ops@node.test"],
        "require_tls": False,
        "heartbeat_url": f"http://127.0.0.1:{heartbeat_port}/ping/socle",
        "group_wait": "1s",
        "group_interval": "2s",
        "repeat_interval": "10m",
        "heartbeat_interval": "1s",
    }
    return root_values(data, render_versions())


def rendered_configs(
    renderer: Renderer, values: dict[str, Any]
) -> tuple[str, str, str, list[dict[str, Any]]]:
    """Alertmanager's config and mail template, the agent's scrape job, the rule groups."""
    root = renderer.root(values)
    apps = {o["metadata"]["name"]: o for o in root if o["kind"] == "Application"}
    kps = renderer.application(apps["kube-prometheus-stack"])
    monitoring = renderer.application(apps["monitoring"])
    secret = next(
        o
        for o in kps
        if o["kind"] == "Secret" and o["metadata"]["name"] == "alertmanager-kps-alertmanager"
    )
    scrape = next(o for o in kps if o["kind"] == "Secret" and "scrape" in o["metadata"]["name"])

    def decoded(obj: dict[str, Any], key: str) -> str:
        return base64.b64decode(obj["data"][key]).decode()

    groups = [
        group for obj in kps + monitoring if obj["kind"] == "PrometheusRule"
        for group in obj["spec"]["groups"]
        # socle-platform's PostgresqlDown reads postgres_exporter, which does not run here
        if group["name"] in ("general.rules", "socle-agent")
    ]  # fmt: skip
    return (
        decoded(secret, "alertmanager.yaml"),
        decoded(secret, "socle-mail.tmpl"),
        decoded(scrape, "additional-scrape-configs.yaml"),
        groups,
    )


def start(name: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack(renderer: Renderer) -> Iterator[Stack]:
    for program in (PROMETHEUS, ALERTMANAGER, AGENT):
        if not Path(program).exists():
            pytest.fail(f"{program} is missing (scripts/setup-machine.sh installs it)")
    from aiosmtpd.controller import Controller

    work = Path(tempfile.mkdtemp(prefix="socle-alert-path-"))
    smtp_port, heartbeat_port, agent_port = free_port(), free_port(), free_port()
    am_port, prom_port = free_port(), free_port()
    inbox, heartbeats = Inbox(), Heartbeats()
    smtp = Controller(_Collect(inbox), hostname="127.0.0.1", port=smtp_port)
    smtp.start()

    class Ping(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            heartbeats.pings.append(
                (time.monotonic(), [a["labels"]["alertname"] for a in body["alerts"]])
            )
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", heartbeat_port), Ping)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    alertmanager_yaml, template, scrape_yaml, groups = rendered_configs(
        renderer, alerting_values(smtp_port, heartbeat_port, agent_port)
    )
    # The pod's paths, here: the mail template beside the config.
    (work / "socle-mail.tmpl").write_text(template)
    config = yaml.safe_load(alertmanager_yaml)
    config["templates"] = [str(work / "*.tmpl")]
    (work / "alertmanager.yaml").write_text(yaml.safe_dump(config))
    for group in groups:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = scaled(rule["for"])
    (work / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    scrape = yaml.safe_load(scrape_yaml)
    for job in scrape:
        job["scrape_interval"] = "1s"
    (work / "prometheus.yaml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(work / "rules.yaml")],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                },
                "scrape_configs": scrape,
            }
        )
    )

    pg = make_cluster()
    pg.psql("create database app")
    pg.psql("create table t (id int); insert into t values (1)", "app")
    password_file = work / "pg-password"
    password_file.write_text("not-the-password\n")
    password_file.chmod(0o600)
    text = config_text(work, pg, password_file, databases=("app",), metrics_port=agent_port)
    (work / "agent.toml").write_text(text + '\n[schedule]\npostgres_backup = "every 2 seconds"\n')
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        processes["alertmanager"] = start("alertmanager", [
            ALERTMANAGER, f"--config.file={work / 'alertmanager.yaml'}",
            f"--storage.path={work / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ], work / "alertmanager.log")  # fmt: skip
        processes["prometheus"] = start("prometheus", [
            PROMETHEUS, f"--config.file={work / 'prometheus.yaml'}",
            f"--storage.tsdb.path={work / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            # firing alerts are sent again every minute by default: scaled too
            "--rules.alert.resend-delay=1s",
        ], work / "prometheus.log")  # fmt: skip
        processes["agent"] = start(
            "agent", [AGENT, "--config", str(work / "agent.toml"), "run"], work / "agent.log"
        )
        wait_for(lambda: ready(f"http://127.0.0.1:{am_port}/-/ready"), 60, "Alertmanager ready")
        wait_for(lambda: ready(f"http://127.0.0.1:{prom_port}/-/ready"), 60, "Prometheus ready")
        yield Stack(
            inbox,
            heartbeats,
            f"http://127.0.0.1:{am_port}",
            f"http://127.0.0.1:{prom_port}",
            password_file,
            pg,
            processes,
            config,
        )
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        http.shutdown()
        smtp.stop()
        pg.destroy()
        if os.environ.get("SOCLE_KEEP_ALERT_LOGS"):
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def test_the_rendered_alertmanager_config_is_valid(stack: Stack) -> None:
    amtool = shutil.which("amtool")
    assert amtool is not None, "amtool is missing (Debian package prometheus-alertmanager)"
    path = Path(stack.config["templates"][0]).parent / "alertmanager.yaml"

    done = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert stack.config["route"]["repeat_interval"] == "10m"


def test_the_heartbeat_reaches_the_dead_mans_switch(stack: Stack) -> None:
    wait_for(lambda: stack.heartbeats.count() >= 3, 60, "three heartbeats")

    assert all(names == ["Watchdog"] for _, names in stack.heartbeats.pings)
    assert not stack.inbox.about("Watchdog"), "the heartbeat is never mailed"


def test_a_failing_backup_mails_once_what_failed_and_since_when_then_once_resolved(
    stack: Stack,
) -> None:
    [firing] = wait_for(
        lambda: stack.inbox.about("SocleJobFailing"),
        90,
        f"the firing mail (mails so far: {stack.inbox.subjects()})",
    )
    fired_at = time.monotonic()
    body = stack.inbox.body(firing)

    assert str(firing["Subject"]).startswith("[socle FIRING:1] SocleJobFailing")
    assert "postgres_backup" in str(firing["Subject"]) and "task=postgres_backup" in body
    assert "The last run of the agent's postgres_backup job failed." in body
    since = re.search(r"Since: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", body)
    assert since is not None, body
    started = dt.datetime.strptime(since.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - started).total_seconds()) < 120
    assert firing["To"] == "ops@node.test"

    # The incident goes on for many evaluations: no second mail, though it still fires.
    time.sleep(INCIDENT_CYCLES)
    assert len(stack.inbox.about("SocleJobFailing")) == 1
    stack.password_file.write_text(stack.pg.password + "\n")
    wait_for(lambda: len(stack.inbox.about("SocleJobFailing")) >= 2, 90, "the resolved mail")
    lasted = time.monotonic() - fired_at
    time.sleep(5)  # a few more group intervals: nothing else comes

    mails = stack.inbox.about("SocleJobFailing")
    assert [str(m["Subject"]).split("]")[0] for m in mails] == [
        "[socle FIRING:1",
        "[socle RESOLVED",
    ]
    assert "RESOLVED: SocleJobFailing" in stack.inbox.body(mails[1])
    print(f"one incident of {lasted:.0f} s ({lasted:.0f} evaluations): {len(mails)} mails")


def test_a_manual_test_alert_arrives(stack: Stack) -> None:
    assert socle_main(["alert", "test", "--alertmanager", stack.alertmanager_url]) == 0

    [mail] = wait_for(lambda: stack.inbox.about("SocleTestAlert"), 60, "the test alert's mail")
    assert "test alert from socle" in str(mail["Subject"])


def test_node_down_inhibits_what_follows_from_it(stack: Stack) -> None:
    before = {name: len(stack.inbox.about(name)) for name in ("PostgresqlDown", "SocleAgentDown")}
    stack.post("KubeNodeNotReady", "warning", node="socle")
    wait_for(lambda: stack.inbox.about("KubeNodeNotReady"), 60, "the node-down mail")
    stack.post("PostgresqlDown", "critical")
    stack.post("SocleAgentDown", "critical")
    time.sleep(6)  # group_wait and two group intervals

    assert {name: len(stack.inbox.about(name)) for name in before} == before

    # the node back: what still fires is mailed, so the inhibition was what held it
    stack.post("KubeNodeNotReady", "warning", lasting=0, node="socle")
    wait_for(
        lambda: len(stack.inbox.about("PostgresqlDown")) > before["PostgresqlDown"],
        60,
        "PostgresqlDown once the node is back",
    )


def test_a_maintenance_window_sends_nothing_but_the_heartbeat(stack: Stack) -> None:
    assert (
        socle_main(
            [
                "maintenance",
                "start",
                "--for",
                "30m",
                "--reason",
                "kernel upgrade",
                "--alertmanager",
                stack.alertmanager_url,
            ]
        )
        == 0
    )
    [window] = [s for s in stack.api().silences() if is_maintenance(s)]
    assert window["comment"] == "kernel upgrade"
    mails, beats = len(stack.inbox.messages), stack.heartbeats.count()

    stack.post("SocleDiskAlmostFull", "critical", mount="/")
    stack.post("KubeAPIDown", "critical")
    time.sleep(6)

    assert stack.inbox.subjects()[mails:] == []
    assert stack.heartbeats.count() > beats + 2, "the heartbeat goes on during maintenance"

    assert socle_main(["maintenance", "end", "--alertmanager", stack.alertmanager_url]) == 0
    assert not [s for s in stack.api().silences() if is_maintenance(s)]
    # once the window is over, what still fires is mailed again
    wait_for(lambda: stack.inbox.about("KubeAPIDown"), 60, "KubeAPIDown after the window")


def test_socle_verify_reads_the_notifications_and_its_test_alert_arrives(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from socle_cli import verify_cluster
    from socle_cli.verify_core import Verdict, VerifyContext, run_checks
    from tests.socle_cli.fake_node import FakeNode

    monkeypatch.setattr(verify_cluster, "ALERTMANAGER_PORT", urlsplit(stack.alertmanager_url).port)
    monkeypatch.setattr(verify_cluster, "PROMETHEUS_PORT", urlsplit(stack.prometheus_url).port)
    node = FakeNode("k3s version v1.33.2+k3s1 (abc)", {})
    ctx = VerifyContext("vps", {"wireguard_address": "127.0.0.1/8"}, node)  # type: ignore[arg-type]

    results = run_checks(ctx, [("5 monitoring", verify_cluster.check_alertmanager)])

    assert [(r.check, r.verdict) for r in results] == [
        ("Alertmanager's notifications", Verdict.GO), ("test alert sent", Verdict.GO)]
    assert results[0].evidence.endswith("in the last 24 h"), results[0].evidence
    assert "SocleTestAlert sent to" in results[1].evidence
    # one mail per alert: a test alert still firing from an earlier test is not mailed again
    wait_for(lambda: stack.inbox.about("SocleTestAlert"), 60, "the test alert's mail")


def test_the_heartbeat_stops_when_alertmanager_stops(stack: Stack) -> None:
    assert stack.heartbeats.count() > 0
    stack.processes["alertmanager"].terminate()
    stack.processes["alertmanager"].wait(30)
    stopped = stack.heartbeats.count()

    time.sleep(5)

    assert stack.heartbeats.count() == stopped, "no heartbeat once Alertmanager is gone"

