"""Deploy the platform into a local test host and print the proof of each phase.

    scripts/demo.sh                 # set-up (as root, or through sudo), then this
    python -m tests.demo [--keep]

Three containers play the parts: `node` (the VPS), `admin` (an admin's laptop on the
VPN) and `outsider` (anyone on the internet). k3s cannot run here: the node gets the
stand-in k3s of tests/standins (pinned in a versions file made for the demo, installed
from an air-gap folder), which records what phases 4 to 6 apply and plays helm-controller
and Argo CD from the pinned charts rendered here with the real helm; no container runs in
it. The node's PostgreSQL is a stand-in too (a real server on the node). The demo ends
with `socle verify`'s report: what the stand-ins answer is listed as "not checked".
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from socle.cluster_manifests import UNMANAGED_ANNOTATION
from socle.exposure import exposures_of, refused_exposures
from socle.versions import load_versions
from tests.gitops.render import missing_tools
from tests.harness.hosts import DEFAULT_CACHE_DIR, REPO_ROOT, Harness, changed_operations
from tests.hosts.admin import connect_admin, new_admin_key, socle_command
from tests.hosts.k3s_node import kubectl, kubectl_json, standin_k3s_data
from tests.hosts.platform_node import (
    GRAFANA_KEY,
    POSTGRESQL_KEY,
    place_renderings,
    platform_node_data,
    renderings,
)
from tests.hosts.probes import (
    eventually,
    key_login,
    password_login,
    scan_tcp,
    tcp_answers,
)
from tests.sops_files import write_sops_file

VPN_ADDRESS = "10.8.0.1"
K3S_VERSION = load_versions().k3s.version


def say(line: str = "") -> None:
    """Print one line of the demo's report."""
    print(line, flush=True)


def check(label: str, ok: bool, detail: str = "") -> bool:
    """Print a proof line, PASS or FAIL, and return whether it held."""
    say(f"  [{'PASS' if ok else 'FAIL'}] {label}" + (f": {detail}" if detail else ""))
    return ok


def pyinfra(
    harness: Harness, hosts_file: Path, *args: str, quiet: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `pyinfra inventories/test.py ARGS -y` as a user would, its output shown live."""
    say(f"$ pyinfra inventories/test.py {' '.join(args)}")
    proc = harness.run_pyinfra(hosts_file, *args, check=False, capture=quiet)
    if proc.returncode != 0:
        raise SystemExit(f"the deploy failed (exit {proc.returncode}): {proc.stderr or ''}")
    return proc


def metric(text: str, name: str, **labels: str) -> float | None:
    """Return the value of sample ``name`` with ``labels`` in exposition ``text``, if any."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def main() -> int:
    """Bring the hosts up, deploy every phase, print the proofs; exit 1 if one failed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true",
                        help="leave the hosts running (python -m tests.harness down removes them)")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        raise SystemExit("the demo renders the pinned charts and needs: " + "; ".join(missing))
    results: list[bool] = []
    harness = Harness(detached=args.keep)
    workdir = Path(tempfile.mkdtemp(prefix="socle-demo-"))
    try:
        say("== test hosts: node (the VPS), admin (on the VPN), outsider (the internet)")
        node = harness.start("node")
        admin = harness.start("admin")
        outsider = harness.start("outsider")
        values = {key: secrets.token_urlsafe(18)
                  for key in ("postgres_password", GRAFANA_KEY, POSTGRESQL_KEY)}  # fmt: skip
        sops_file, age_key = write_sops_file(workdir, values)
        os.environ["SOPS_AGE_KEY_FILE"] = str(age_key)
        admin_key, admin_public = new_admin_key(workdir)
        data = platform_node_data(admin_public, values["postgres_password"], sops_file,
                                  standin_k3s_data(workdir))  # fmt: skip
        hosts_file = harness.write_hosts_file(
            DEFAULT_CACHE_DIR / "hosts.json" if args.keep else workdir / "hosts.json",
            [node], data={"node": data},
        )  # fmt: skip

        say("\n== stand-ins: the cluster's PostgreSQL on the node, the charts rendered for "
            "the stand-in k3s")
        pyinfra(harness, hosts_file, "tests/hosts/deploys/postgres_standin.py", quiet=True)
        started = time.monotonic()
        rendered = renderings(data)
        place_renderings(node, rendered)
        count = sum(len(r["objects"]) for r in rendered.values())
        say(f"  {count} objects of the pinned charts and gitops/ rendered with the real helm "
            f"in {time.monotonic() - started:.1f} s")
        say("\n== the platform")
        started = time.monotonic()
        pyinfra(harness, hosts_file, "deploys/all.py")
        first_run_s = time.monotonic() - started

        say(f"\n== proof (first run of deploys/all.py took {first_run_s:.1f} s)")
        say("phase 1, baseline, seen from the outsider:")
        open_ports = scan_tcp(outsider, node.address)
        results.append(check("TCP ports open among all 65535", open_ports == [22], str(open_ports)))
        refused = password_login(node.address, "ubuntu", "ubuntu").returncode != 0
        results.append(check("password login as ubuntu refused", refused))
        root = key_login(node.address, "root", str(node.key_path)).returncode != 0
        results.append(check("root login refused, even with a key", root))

        say("phase 2, WireGuard, from the admin's machine:")
        connect_admin(hosts_file, admin, admin_key)
        tunnel = eventually(lambda: tcp_answers(admin, VPN_ADDRESS, 6443), 60)
        results.append(check("6443 (Kubernetes API) through the tunnel", tunnel,
                             f"{VPN_ADDRESS}:6443 " + ("answers" if tunnel else "silent")))
        public = tcp_answers(outsider, node.address, 6443)
        results.append(check("6443 closed on the public address", not public))
        handshake = node.ssh("sudo wg show wg0 latest-handshakes").stdout.split()
        results.append(check("handshake recorded on the node", len(handshake) == 2
                             and int(handshake[1]) > 0))

        say("phase 3, k3s (the stand-in k3s, pinned and sha256-checked):")
        nodes = kubectl(node, "get", "nodes", "-o", "json", check=False)
        ready = nodes.returncode == 0 and all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
            and n["status"]["nodeInfo"]["kubeletVersion"] == K3S_VERSION
            for n in json.loads(nodes.stdout)["items"]
        )
        results.append(check(f"node Ready with the pinned {K3S_VERSION}", ready))
        kubeconfig = workdir / "kubeconfig"
        written = socle_command(hosts_file, "kubeconfig", "--inventory", "inventories/test.py",
                                "--output", str(kubeconfig))
        results.append(check("socle kubeconfig: a private file for the API at the VPN address",
                             written.returncode == 0 and kubeconfig.stat().st_mode & 0o077 == 0
                             and f"https://{VPN_ADDRESS}:6443" in kubeconfig.read_text()))

        say("phases 4 to 6, in the stand-in k3s (recorded objects; nothing runs there):")
        chart = kubectl_json(node, "get", "helmchart", "argocd", "-n", "kube-system")
        handed_over = chart.get("metadata", {}).get("annotations", {}).get(
            UNMANAGED_ANNOTATION) == "true"
        records = kubectl_json(node, "get", "secrets", "-n", "argocd", "-l", "owner=helm")
        results.append(check("Argo CD installed from its pinned chart, then handed over to "
                             "itself (HelmChart unmanaged, no Helm record left)",
                             handed_over and not records.get("items")))
        apps = kubectl_json(node, "get", "applications", "-n", "argocd").get("items", [])
        synced = [a["metadata"]["name"] for a in apps
                  if a.get("status", {}).get("sync", {}).get("status") == "Synced"]
        results.append(check("the root Application and its children synced (by the stand-in)",
                             len(synced) == len(apps) == 7, ", ".join(sorted(synced))))
        secret_files = node.exec("stat -c '%a %U %n' /etc/socle/kube-secrets/*").stdout.split("\n")
        results.append(check("Secrets for Grafana, Alertmanager and PostgreSQL from SOPS, "
                             "their files root-only",
                             all(f.startswith("600 root") for f in secret_files if f)
                             and len([f for f in secret_files if f]) == 3))
        listing = kubectl_json(node, "get", "services,pods", "-A").get("items", [])
        exposures = exposures_of(listing)
        on_vpn = sorted(f"{e.name}" for e in exposures if e.how == "externalIPs")
        results.append(check("nothing public; admin surfaces on the VPN address only",
                             refused_exposures(exposures, vpn_address=VPN_ADDRESS) == []
                             and len(on_vpn) == 4, ", ".join(on_vpn)))

        say("phase 7, the agent: a backup, then a restore drill timed against the RTO:")
        results.append(check("socle-agent active under systemd", node.ssh(
            "systemctl is-active socle-agent", check=False).stdout.strip() == "active"))
        backup = node.ssh("sudo socle-agent backup postgres", check=False)
        results.append(check("socle-agent backup postgres", backup.returncode == 0,
                             backup.stdout.strip().splitlines()[-1] if backup.stdout else
                             backup.stderr.strip()))
        drill = node.ssh("sudo socle-agent drill postgres", check=False)
        results.append(check("socle-agent drill postgres", drill.returncode == 0,
                             drill.stdout.strip().splitlines()[-1] if drill.stdout else
                             drill.stderr.strip()))
        metrics = admin.exec(["curl", "-sf", "--max-time", "5",
                              f"http://{VPN_ADDRESS}:9464/metrics"], check=False).stdout
        duration = metric(metrics, "socle_drill_last_duration_seconds", kind="postgres")
        rto = metric(metrics, "socle_rto_target_seconds", kind="postgres")
        passed = metric(metrics, "socle_drill_last_result", kind="postgres")
        within_rto = passed == 1.0 and duration is not None and rto is not None and duration <= rto
        timing = f"restored in {duration or 0:.2f} s, RTO {rto or 0:.0f} s"
        results.append(check("drill passed within the RTO, read from the metrics over the VPN",
                             within_rto, timing))
        results.append(check("metrics closed on the public address",
                             not tcp_answers(outsider, node.address, 9464)))

        say("idempotence: a second run of every phase:")
        second = pyinfra(harness, hosts_file, "deploys/all.py", "--json", quiet=True)
        changed = changed_operations(second.stdout or "")
        results.append(check("second run changes nothing", changed == [], str(changed or "")))

        say("reboot of the node:")
        node.restart()
        back = eventually(lambda: node.ssh("systemctl is-active socle-agent wg-quick@wg0 k3s",
                                           check=False).returncode == 0, 120)
        firewall = node.ssh("sudo ufw status", check=False).stdout.startswith("Status: active")
        results.append(check("firewall, VPN, k3s and agent back", back and firewall))
        results.append(check("still only 22 open from outside", scan_tcp(outsider, node.address)
                             == [22]))
        metrics_back = eventually(lambda: tcp_answers(admin, VPN_ADDRESS, 9464), 120)
        results.append(check("metrics over the VPN after the reboot", metrics_back))

        say("\n== the Go/No-Go report, as an operator gets it:")
        say("$ socle verify -i inventories/test.py")
        node.ssh("sudo socle-agent backup postgres && sudo socle-agent drill postgres",
                 check=False)
        report = socle_command(hosts_file, "verify", "-i", "inventories/test.py",
                               "--report-dir", str(REPO_ROOT / "verify-reports"))  # fmt: skip
        say(report.stdout.rstrip())
        results.append(check("socle verify says Go (what the stand-ins answer: not checked)",
                             report.returncode == 0,
                             report.stderr.strip().splitlines()[-1] if report.stderr else ""))
    finally:
        os.environ.pop("SOPS_AGE_KEY_FILE", None)
        if not args.keep:
            harness.close()
    passed_count = sum(results)
    say(f"\n{passed_count} passed, {len(results) - passed_count} failed")
    if args.keep:
        say(json.dumps({h.name: h.address for h in harness.hosts.values()}))
        say("hosts kept: pyinfra inventories/test.py ...; python -m tests.harness down")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
