"""Test hosts: booted systemd containers reached over SSH, exactly as production is.

Example::

    with Harness() as harness:
        node = harness.start("node", networks=("public",))
        print(node.ssh("sudo systemctl is-system-running").stdout)
        node.restart()          # the "reboot": same disk, same address
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container
from docker.models.networks import Network
from docker.types import IPAMConfig, IPAMPool

from tests.harness.engine import connect_engine, engine_name
from tests.harness.errors import HarnessError, HostBootFailed
from tests.harness.images import ensure_base_image, ensure_test_image, log
from tests.harness.ssh_keys import ensure_key_pair

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = REPO_ROOT / ".testhosts"
LABEL = "socle.test-host"
RUN_LABEL = "socle.test-run"
MANUAL_LABEL = "socle.test-host.manual"
OWNER_PID_LABEL = "socle.test-run.pid"
BOOT_TIMEOUT_S = 120.0
# Subnets the harness may give its networks; one /24 per network, skipping any in use.
SUBNET_POOL = ipaddress.ip_network("10.213.0.0/16")
SSH_OPTIONS = (
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=10",
)


@dataclass
class TestHost:
    """One running test host: its name, addresses, login and the container behind it."""

    __test__ = False  # not a pytest test class

    name: str
    addresses: dict[str, str]
    user: str
    key_path: Path
    container: Container = field(repr=False)
    harness: Harness = field(repr=False)

    @property
    def address(self) -> str:
        """The host's address on its first network (fixed across restarts)."""
        return next(iter(self.addresses.values()))

    def ssh(
        self, command: str, *, check: bool = True, user: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` on the host with the real OpenSSH client, as production is reached."""
        argv = [
            "ssh", *SSH_OPTIONS, "-i", str(self.key_path),
            f"{user or self.user}@{self.address}", command,
        ]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)

    def exec(
        self, command: str | Sequence[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` as root inside the container: test set-up and inspection only."""
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        exit_code, output = self.container.exec_run(argv, demux=True)
        out, err = cast(tuple[bytes | None, bytes | None], output or (None, None))
        stdout = (out or b"").decode(errors="replace")
        stderr = (err or b"").decode(errors="replace")
        result = subprocess.CompletedProcess(argv, exit_code or 0, stdout, stderr)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv, stdout, stderr)
        return result

    def exec_background(self, command: str) -> None:
        """Start `command` detached inside the container (a test listener, say)."""
        self.container.exec_run(["sh", "-c", command], detach=True)

    def restart(self) -> None:
        """Reboot the host (container restart): disk and addresses kept; waits until ready."""
        log(f"restarting {self.name}")
        self.container.restart(timeout=30)
        self.harness.wait_ready(self)

    def inventory_entry(self, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Return this host as an entry of the hosts file read by inventories/test.py.

        ``operator_address`` is where this machine (the operator's, running pyinfra)
        reaches the host from: the gateway of the host's first network.
        """
        return {
            "name": self.name,
            "address": self.address,
            "addresses": self.addresses,
            "operator_address": self.harness.gateway(next(iter(self.addresses))),
            "user": self.user,
            "key": str(self.key_path),
            "data": dict(data or {}),
        }


class Harness:
    """Starts, restarts and removes test hosts; removes all it made when closed."""

    def __init__(self, cache_dir: Path = DEFAULT_CACHE_DIR, *, detached: bool = False) -> None:
        self.cache_dir = cache_dir
        self.run_id = "m" + secrets.token_hex(3) if detached else secrets.token_hex(4)
        self.detached = detached
        self.client: docker.DockerClient = connect_engine()
        self.engine = engine_name(self.client)
        self.key_path = ensure_key_pair(cache_dir)
        self._image: str | None = None
        self._networks: dict[str, Network] = {}
        self._next_address: dict[str, int] = {}
        self.hosts: dict[str, TestHost] = {}
        if not detached:
            remove_orphans(self.client)

    def __enter__(self) -> Harness:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def image(self) -> str:
        """The test-host image, built on first use."""
        if self._image is None:
            base = ensure_base_image(self.client, self.cache_dir)
            public_key = self.key_path.with_suffix(".pub").read_text().strip()
            self._image = ensure_test_image(
                self.client, base, public_key, REPO_ROOT, self.cache_dir
            )
        return self._image

    def _labels(self) -> dict[str, str]:
        labels = {LABEL: "1", RUN_LABEL: self.run_id}
        if self.detached:
            labels[MANUAL_LABEL] = "1"
        else:
            labels[OWNER_PID_LABEL] = str(os.getpid())
        return labels

    def _used_subnets(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        used = []
        for net in self.client.networks.list():
            for pool in (net.attrs.get("IPAM") or {}).get("Config") or []:
                subnet = pool.get("Subnet")
                if subnet and ":" not in subnet:
                    used.append(ipaddress.ip_network(subnet, strict=False))
        return used

    def network(self, logical_name: str) -> Network:
        """Return this run's network `logical_name`, creating it with a free /24."""
        if logical_name in self._networks:
            return self._networks[logical_name]
        for attempt in range(64):
            used = self._used_subnets()
            subnets = [s for s in SUBNET_POOL.subnets(new_prefix=24)]
            start = int(self.run_id[-4:], 16) % len(subnets) if attempt == 0 else 0
            free = [
                s for s in subnets[start:] + subnets[:start]
                if not any(s.overlaps(u) for u in used)
            ]
            if not free:
                break
            subnet = free[0]
            try:
                net = self.client.networks.create(
                    f"socle-{self.run_id}-{logical_name}",
                    driver="bridge",
                    ipam=IPAMConfig(
                        pool_configs=[
                            IPAMPool(subnet=str(subnet), gateway=str(subnet.network_address + 1))
                        ]
                    ),
                    labels=self._labels(),
                )
            except APIError as exc:
                # Another run took the subnet between our look and our create.
                if "already" in str(exc).lower() or "overlap" in str(exc).lower():
                    continue
                raise HarnessError(f"cannot create test network {logical_name}: {exc}") from exc
            self._networks[logical_name] = net
            self._next_address[logical_name] = 10
            return net
        raise HarnessError(f"no free /24 left in {SUBNET_POOL} for test network {logical_name}")

    def gateway(self, logical_name: str) -> str:
        """Return this machine's address on the run's network ``logical_name``."""
        net = self.network(logical_name)
        subnet = ipaddress.ip_network(net.attrs["IPAM"]["Config"][0]["Subnet"])
        return str(subnet.network_address + 1)

    def _allocate_address(self, logical_name: str) -> str:
        net = self.network(logical_name)
        subnet = ipaddress.ip_network(net.attrs["IPAM"]["Config"][0]["Subnet"])
        offset = self._next_address[logical_name]
        self._next_address[logical_name] = offset + 1
        return str(subnet.network_address + offset)

    def start(
        self,
        name: str,
        networks: Sequence[str] = ("public",),
        *,
        boot_timeout: float = BOOT_TIMEOUT_S,
    ) -> TestHost:
        """Start a test host on `networks`, wait until it is ready, and return it."""
        if name in self.hosts:
            raise HarnessError(f"a test host named {name} is already up in this run")
        if not networks:
            raise HarnessError("a test host needs at least one network")
        image = self.image
        addresses = {n: self._allocate_address(n) for n in networks}
        first = networks[0]
        kwargs: dict[str, Any] = {}
        first_name = str(self.network(first).name)
        if self.engine == "docker":
            # Docker does not set up systemd's mounts by itself; Podman does (and refuses
            # duplicates), so these go to Docker only.
            kwargs["tmpfs"] = {"/run": "", "/run/lock": "", "/tmp": ""}
            kwargs["cgroupns"] = "host"
            kwargs["volumes"] = {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}}
        log(f"starting test host {name} at {addresses}")
        try:
            container = self.client.containers.create(
                image,
                name=f"socle-{self.run_id}-{name}",
                hostname=name,
                detach=True,
                privileged=True,
                devices=["/dev/net/tun:/dev/net/tun"],
                labels={**self._labels(), "socle.test-host.name": name},
                network=first_name,
                networking_config={
                    first_name: self.client.api.create_endpoint_config(
                        ipv4_address=addresses[first]
                    )
                },
                **kwargs,
            )
            for extra in networks[1:]:
                self.network(extra).connect(container, ipv4_address=addresses[extra])
            container.start()
        except (APIError, DockerException) as exc:
            self._remove_by_name(f"socle-{self.run_id}-{name}")
            raise HarnessError(f"cannot start test host {name}: {exc}") from exc
        host = TestHost(name, addresses, "ubuntu", self.key_path, container, self)
        self.hosts[name] = host
        try:
            self.wait_ready(host, boot_timeout)
        except BaseException:
            self.remove(host)
            raise
        return host

    def wait_ready(self, host: TestHost, timeout: float = BOOT_TIMEOUT_S) -> None:
        """Wait until systemd has booted and sshd accepts the harness' key, or raise."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            host.container.reload()
            if host.container.status not in ("running", "created", "restarting"):
                raise HostBootFailed(self._boot_report(host, f"container {host.container.status}"))
            try:
                state = host.exec(["systemctl", "is-system-running"], check=False).stdout.strip()
            except (APIError, DockerException):
                state = "not reachable"
            if state in ("running", "degraded") and _ssh_banner(host.address):
                probe = host.ssh("true", check=False, timeout=30)
                if probe.returncode == 0:
                    return
                state = f"ssh login failed: {probe.stderr.strip()}"
            time.sleep(0.3)
        raise HostBootFailed(self._boot_report(host, f"not ready after {timeout:.0f} s ({state})"))

    def _boot_report(self, host: TestHost, reason: str) -> str:
        try:
            failed = host.exec(["systemctl", "--failed", "--no-legend"], check=False).stdout
        except (APIError, DockerException):
            failed = "(could not ask systemd)"
        return (
            f"test host {host.name} ({host.address}) never became ready: {reason}. "
            f"Failed units: {failed.strip() or 'none'}. Check that the engine runs privileged "
            f"containers with systemd (see scripts/setup-machine.sh)."
        )

    def remove(self, host: TestHost) -> None:
        """Remove one host and its disk."""
        self.hosts.pop(host.name, None)
        self._remove_by_name(str(host.container.name))

    def _remove_by_name(self, container_name: str) -> None:
        with contextlib.suppress(NotFound):
            self.client.containers.get(container_name).remove(force=True, v=True)

    def close(self) -> None:
        """Remove every container and network of this run, whatever state they are in."""
        remove_resources(self.client, {RUN_LABEL: self.run_id})
        self.hosts.clear()
        self._networks.clear()

    def write_hosts_file(
        self,
        path: Path,
        hosts: Sequence[TestHost],
        data: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Path:
        """Write the hosts file that inventories/test.py reads; `data` is per host name."""
        entries = [h.inventory_entry((data or {}).get(h.name)) for h in hosts]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"hosts": entries}, indent=2))
        return path

    def run_pyinfra(
        self,
        hosts_file: Path,
        *args: str,
        check: bool = True,
        timeout: float = 900,
        capture: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run the user's command line `pyinfra inventories/test.py ARGS -y` from the repo.

        With ``capture=False`` its output goes to this process' terminal, as a user sees it.
        """
        pyinfra = Path(sys.executable).with_name("pyinfra")
        argv = [str(pyinfra), "inventories/test.py", *args, "-y"]
        env = {**os.environ, "SOCLE_TEST_HOSTS": str(hosts_file), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run(
            argv, cwd=REPO_ROOT, env=env, capture_output=capture, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} failed with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc


def changed_operations(json_stdout: str) -> list[str]:
    """Return the names of the operations that changed a host, from `pyinfra --json` output.

    >>> changed_operations(proc.stdout)  # doctest: +SKIP
    ['The smoke service's unit']
    """
    start = json_stdout.find("{")
    if start < 0:
        raise ValueError(f"no JSON in pyinfra's output: {json_stdout[:500]!r}")
    report = json.loads(json_stdout[start:])
    operations = report.get("results", {}).get("operations", [])
    return [op["name"] for op in operations if op.get("success") or op.get("error")]


def _ssh_banner(address: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2) as sock:
            sock.settimeout(3)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def remove_resources(client: docker.DockerClient, labels: Mapping[str, str]) -> list[str]:
    """Remove the containers then networks carrying all `labels`; return their names."""
    selector = [f"{k}={v}" for k, v in labels.items()]
    removed = []
    for container in client.containers.list(all=True, filters={"label": selector}):
        try:
            container.remove(force=True, v=True)
            removed.append(str(container.name))
        except NotFound:
            pass
    for net in client.networks.list(filters={"label": selector}):
        try:
            net.remove()
            removed.append(str(net.name))
        except NotFound:
            pass
    return removed


def remove_orphans(client: docker.DockerClient) -> list[str]:
    """Remove hosts and networks of test runs whose process is gone (killed with -9, say)."""
    selector: dict[str, str | list[str] | bool] = {"label": [f"{LABEL}=1"]}
    label_sets = [c.labels for c in client.containers.list(all=True, filters=selector)]
    label_sets += [n.attrs.get("Labels") or {} for n in client.networks.list(filters=selector)]
    orphan_runs = set()
    for labels in label_sets:
        pid = labels.get(OWNER_PID_LABEL)
        if pid and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            orphan_runs.add(labels[RUN_LABEL])
    removed = []
    for run_id in orphan_runs:
        log(f"removing test hosts left by an earlier run that was killed ({run_id})")
        removed += remove_resources(client, {RUN_LABEL: run_id})
    return removed


def leaked_containers(client: docker.DockerClient, run_id: str) -> list[str]:
    """Return the names of containers left by run `run_id` (should be none after close)."""
    selector = [f"{RUN_LABEL}={run_id}"]
    return [str(c.name) for c in client.containers.list(all=True, filters={"label": selector})]
