"""The off-site drill (the newest copies restored into scratch, timed against the RTO) and
the repository check (a damaged pack named), with what they leave in the metrics."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from socle_agent.metrics import build_registry
from socle_agent.offsite import records

from tests.agent.conftest import PgCluster
from tests.agent.offsite.conftest import OffsiteNode
from tests.agent.offsite_repository import RestServer
from tests.gitops.monitoring.test_socle_agent_rules import AGENT_METRICS


def metrics(node: OffsiteNode) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(build_registry(node.config())).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_newest_copies_are_drilled_from_off_site_and_timed(
    node: OffsiteNode, pg: PgCluster
) -> None:
    assert node.agent("backup", "postgres").returncode == 0
    assert node.agent("snapshot", "k3s").returncode == 0

    drill = node.agent("drill", "offsite")

    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert "postgres/shop-" in drill.stdout and "k3s/k3s-" in drill.stdout
    found = metrics(node)
    for kind, subject in (("postgres", "shop"), ("k3s", "k3s")):
        labels = (("kind", kind), ("subject", subject))
        assert found[("socle_offsite_drill_last_result", labels)] == 1
        assert found[("socle_offsite_drill_last_duration_seconds", labels)] > 0
    assert found[("socle_offsite_rpo_target_seconds", (("kind", "postgres"),))] == 93600
    assert found[("socle_offsite_newest_timestamp_seconds",
                  (("kind", "postgres"), ("subject", "shop")))] > 0
    assert pg.psql("select count(*) from pg_database where datname like 'socle_drill_%'"
                   ).strip() == "0"
    assert [p.name for p in (node.config().agent.backup_dir / "offsite").iterdir()] == []
    # every off-site metric the alert rules and dashboard may use is exported
    assert node.agent("check", "offsite").returncode == 0
    exported = {name.removesuffix("_total") for name, _ in metrics(node)}
    assert {m for m in AGENT_METRICS if m.startswith("socle_offsite_")} <= exported


def test_a_damaged_copy_fails_the_off_site_drill(node: OffsiteNode) -> None:
    node.rewrite("[offsite]\n", "[offsite]\ncopy_after_backup = false\n")
    assert node.agent("backup", "postgres").returncode == 0
    [backup] = node.backups("postgres")
    manifest = (backup.path / "manifest.json").read_text()
    (backup.path / "manifest.json").write_text(manifest.replace(
        '"public.customers": 3000', '"public.customers": 2999'))
    assert node.agent("copy", "offsite").returncode == 0

    drill = node.agent("drill", "offsite", "--kind", "postgres")

    assert drill.returncode == 1
    assert "row count of public.customers: 3000 restored, 2999 in the manifest" in drill.stderr
    found = metrics(node)
    assert found[("socle_offsite_drill_last_result",
                  (("kind", "postgres"), ("subject", "shop")))] == 0


def test_the_check_names_a_damaged_pack_file(
    tmp_path: Path, node: OffsiteNode, rest_server: RestServer
) -> None:
    assert node.agent("backup", "postgres").returncode == 0
    assert node.agent("check", "offsite").returncode == 0
    assert metrics(node)[("socle_offsite_check_last_result", ())] == 1
    measured = records.load(node.config())["repository_bytes"]
    packs = (rest_server.root / node.host / "data").rglob("*")
    damaged = max((p for p in packs if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))

    check = node.agent("check", "offsite")

    name = f"data/{damaged.parent.name}/{damaged.name}"
    assert check.returncode == 1
    assert f"damaged pack file(s) off-site: {name}" in check.stderr
    found = metrics(node)
    assert found[("socle_offsite_check_last_result", ())] == 0
    assert found[("socle_offsite_repository_bytes", ())] == measured
    assert records.load(node.config())["check"]["damaged"] == [name]
