"""Install, run, upgrade and roll back k3s, and keep socle's objects in its cluster.

Every change to the binary is checked against the pinned sha256 on the node, as root,
in a root-only folder, before anything is replaced; an upgrade first takes a datastore
snapshot with socle's agent and keeps the previous binary, so that
``deploys/k3s_rollback.py`` can put both back.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Generator, Iterable, Mapping
from pathlib import Path
from typing import Any

from pyinfra import host, logger
from pyinfra.api import (
    FileUploadCommand,
    FunctionCommand,
    OperationValueError,
    QuoteString,
    StringCommand,
    operation,
)
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS

from facts.k3s_state import (
    AGENT_KUBECONFIG_PROGRAM,
    AgentKubeconfig,
    K3sExposure,
    K3sInstall,
    K3sNodes,
    K3sUnit,
    KubeObjectDigests,
)
from socle.exposure import (
    DEFAULT_ALLOWED,
    AllowedExposure,
    Exposure,
    describe_refused,
    refused_exposures,
)
from socle.k3s_manifests import CLUSTER_SCOPED, object_ref
from socle.k3s_plan import (
    IMAGES_DIR,
    INSTALL_PATH,
    KERNEL_MODULES,
    PREVIOUS_BINARY,
    ROLLBACK_RECORD,
    STATE_DIR,
    K3sRefused,
    binary_change,
    rollback_needed,
)

AGENT = "/usr/local/bin/socle-agent"
STAGED_BINARY = f"{STATE_DIR}/k3s.new"
STAGED_IMAGES = f"{STATE_DIR}/airgap-images.new"

Command = StringCommand | FileUploadCommand | FunctionCommand


_STAGING_DIRS = " ".join(shlex.quote(p) for p in (STATE_DIR, str(Path(STATE_DIR).parent)))


def _verify(path: str, sha256: str, what: str) -> StringCommand:
    """Fail, removing ``path`` (and socle's staging folders if that leaves them empty),
    unless its sha256 is ``sha256``."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise OperationValueError(f"{sha256!r} is not a sha256")
    quoted = shlex.quote(path)
    return StringCommand(
        f'actual="$(sha256sum < {quoted} | cut -d " " -f 1)"; '
        f'if [ "$actual" != {sha256} ]; then rm -f {quoted}; rmdir {_STAGING_DIRS} 2>/dev/null; '
        f'echo "sha256 mismatch for {what}: the pin says {sha256}, the file is $actual;'
        ' refused, nothing was replaced" >&2; exit 1; fi'
    )


# Run on the node before an upgrade replaces the binary: a snapshot of the datastore by
# socle's agent, checked by its drill, then the running binary and air-gap images kept
# and a record written. Any failure removes the staged binary and stops the upgrade with
# the installed k3s untouched.
UPGRADE_PROGRAM = r"""
import glob, json, os, re, shutil, subprocess, sys, time
(agent, installed, staged, previous, images_dir, record, old_version, old_sha,
 new_version) = sys.argv[1:10]
def fail(why):
    if os.path.exists(staged):
        os.remove(staged)
    sys.stderr.write("refusing to upgrade k3s: " + why
                     + "\nThe installed k3s " + old_version + " was not replaced.\n")
    sys.exit(1)
for attempt in range(60):
    done = subprocess.run([agent, "snapshot", "k3s"], capture_output=True, text=True,
                          timeout=3600)
    if done.returncode != 75:  # 75: another k3s job holds the datastore; wait for it
        break
    time.sleep(5)
if done.returncode != 0:
    fail("the datastore snapshot (socle-agent snapshot k3s) failed: "
         + (done.stderr or done.stdout).strip()[-800:])
match = re.search(r"k3s_snapshot: ok in \S+ s: (\S+) ", done.stdout)
if match is None:
    fail("cannot read the snapshot's id in: " + done.stdout.strip()[-300:])
snapshot = match.group(1)
drill = subprocess.run([agent, "drill", "k3s", "--snapshot", snapshot], capture_output=True,
                       text=True, timeout=3600)
if drill.returncode != 0:
    fail("the snapshot " + snapshot + " failed its check (socle-agent drill k3s): "
         + (drill.stderr or drill.stdout).strip()[-800:])
temp = previous + ".socle-new"
shutil.copyfile(installed, temp)
os.chmod(temp, 0o700)
os.replace(temp, previous)
kept_images = previous + "-images"
shutil.rmtree(kept_images, ignore_errors=True)
os.mkdir(kept_images, 0o700)
for image in glob.glob(os.path.join(images_dir, "k3s-airgap-images-*")):
    shutil.copyfile(image, os.path.join(kept_images, os.path.basename(image)))
entry = {"previous_version": old_version, "previous_sha256": old_sha,
         "upgraded_to": new_version, "snapshot": snapshot, "time": int(time.time())}
fd = os.open(record + ".socle-new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, (json.dumps(entry) + "\n").encode())
os.fsync(fd)
os.close(fd)
os.replace(record + ".socle-new", record)
print("snapshot " + snapshot + " taken and checked; k3s " + old_version + " kept at " + previous)
"""


def _run_program(state: Any, host: Any, program: str, *arguments: str) -> bool:
    """Run one of PROGRAMS with python3 on the node, its output shown as it comes."""
    command = StringCommand("python3 -c", QuoteString(PROGRAMS[program]),
                            *(QuoteString(a) for a in arguments))
    connector = {key: value for key, value in (host.current_op_global_arguments or {}).items()
                 if key in CONNECTOR_ARGUMENT_KEYS}
    ok, _ = host.run_shell_command(command, print_output=True, **connector)
    return bool(ok)


def _program(name: str, *arguments: str) -> FunctionCommand:
    """A long, talkative step on the node whose output the operator sees live."""
    return FunctionCommand(_run_program, (name, *arguments), {})


def _install_staged(staged: str, target: str, mode: str = "0755") -> StringCommand:
    """Copy a checked file beside its target, then rename it over the target (atomic)."""
    temp = str(Path(target).parent / f".{Path(target).name}.socle-new")
    return StringCommand(
        "install -m", mode, QuoteString(staged), QuoteString(temp),
        "&& mv -f", QuoteString(temp), QuoteString(target), "&& rm -f", QuoteString(staged),
    )


@operation()
def binary(
    version: str,
    sha256: str,
    url: str | None = None,
    local_file: str | None = None,
) -> Generator[Command, None, None]:
    """
    Install the pinned k3s binary at ``/usr/local/bin/k3s``, or upgrade to it.

    + version: the pinned release, e.g. ``v1.33.2+k3s1``
    + sha256: the pinned sha256 of the binary for the node's architecture
    + url: where the node downloads it (the release), or
    + local_file: a file on this machine (an air-gap folder) uploaded to the node

    The binary is staged in a root-only folder and checked against ``sha256`` there, as
    root; a mismatch removes it and fails, naming both checksums, with the installed k3s
    untouched. An upgrade (a newer version, at most one minor ahead) first has socle's
    agent take a datastore snapshot and check it, keeps the running binary as
    ``/usr/local/lib/socle/k3s/k3s.previous`` (and the air-gap images beside it) and
    records them for a rollback; without
    the agent, or when the snapshot fails, the upgrade is refused. An older version is
    refused: that is ``deploys/k3s_rollback.py``. The unit is not restarted here.

    **Example:**

    .. code:: python

        k3s.binary(name="k3s binary", version="v1.33.2+k3s1", sha256="9f2c...",
                   url="https://.../v1.33.2%2Bk3s1/k3s")
    """
    if (url is None) == (local_file is None):
        raise OperationValueError("give the binary's url or local_file, one of them")
    node = host.get_fact(K3sInstall)
    if node["sha256"] == sha256:
        host.noop(f"k3s {version} is installed (sha256 checked)")
        return
    try:
        change = binary_change(node["version"], version)
    except K3sRefused as refusal:
        raise OperationValueError(str(refusal)) from None
    if change == "upgrade" and not node["agent"]:
        raise OperationValueError(
            f"upgrading k3s {node['version']} to {version} needs a datastore snapshot first, "
            f"taken by socle's agent ({AGENT}), which is not installed: deploy the agent "
            "(deploys/agent.py), then run this again"
        )
    yield StringCommand("install -d -m 0700", QuoteString(STATE_DIR), "&& rm -f",
                        QuoteString(STAGED_BINARY))
    if local_file is not None:
        yield FileUploadCommand(local_file, STAGED_BINARY)
    else:
        assert url is not None
        yield StringCommand(
            "curl -fsSL --proto =https --retry 3 --connect-timeout 20 --max-time 900 -o",
            QuoteString(STAGED_BINARY), QuoteString(url), "|| { rm -f", QuoteString(STAGED_BINARY),
            f"; rmdir {_STAGING_DIRS} 2>/dev/null; echo 'could not download k3s {version} from'",
            QuoteString(url), ">&2; exit 1; }",
        )  # fmt: skip
    yield _verify(STAGED_BINARY, sha256, f"the k3s {version} binary")
    if change == "upgrade":
        arguments = (AGENT, INSTALL_PATH, STAGED_BINARY, PREVIOUS_BINARY, IMAGES_DIR,
                     ROLLBACK_RECORD, str(node["version"]), str(node["sha256"]), version)
        yield _program("upgrade", *arguments)
    yield _install_staged(STAGED_BINARY, INSTALL_PATH)


@operation()
def airgap_images(local_file: str, sha256: str) -> Generator[Command, None, None]:
    """
    Put the release's air-gap images archive where k3s loads it at start, checked.

    + local_file: the archive on this machine (``k3s-airgap-images-<arch>.tar.zst``, ...)
    + sha256: its pinned sha256

    Staged and checked like the binary; archives of other versions are removed from
    ``/var/lib/rancher/k3s/agent/images`` once the new one is in place.
    """
    name = Path(local_file).name
    node = host.get_fact(K3sUnit)
    if node["images"] == {name: sha256}:
        host.noop(f"{name} is in place (sha256 checked)")
        return
    target = f"{IMAGES_DIR}/{name}"
    yield StringCommand("install -d -m 0700", QuoteString(STATE_DIR), "&& install -d -m 0755",
                        QuoteString(IMAGES_DIR), "&& rm -f", QuoteString(STAGED_IMAGES))
    yield FileUploadCommand(local_file, STAGED_IMAGES)
    yield _verify(STAGED_IMAGES, sha256, f"the air-gap images {name}")
    yield _install_staged(STAGED_IMAGES, target, mode="0644")
    for other in sorted(set(node["images"]) - {name}):
        yield StringCommand("rm -f", QuoteString(f"{IMAGES_DIR}/{other}"))


@operation()
def kernel_features(modules: Iterable[str] = KERNEL_MODULES) -> Generator[Command, None, None]:
    """
    Load the kernel modules k3s needs (``overlay``, ``br_netfilter``) when the kernel
    does not offer their feature yet; boot loads them from ``/etc/modules-load.d``.
    """
    node = host.get_fact(K3sUnit)
    missing = [name for name in modules if name not in node["kernel_features"]]
    if not missing:
        host.noop(f"the kernel offers {', '.join(modules)}")
        return
    yield StringCommand(
        "modprobe -a", *missing, "|| { echo 'k3s needs the kernel modules",
        " ".join(missing), "and modprobe could not load them' >&2; exit 1; }",
    )


@operation()
def service(restart: bool = False) -> Generator[Command, None, None]:
    """
    Enable the k3s unit and start it, or restart it when ``restart``, without waiting:
    ``wait_ready`` waits, with a deadline (the unit itself has none, as k3s's own).
    """
    node = host.get_fact(K3sUnit)
    if node["enabled"] != "enabled":
        yield StringCommand("systemctl enable k3s")
    if node["active"] != "active":
        yield StringCommand("systemctl start --no-block k3s")
    elif restart:
        yield StringCommand("systemctl restart --no-block k3s")
    elif node["enabled"] == "enabled":
        host.noop("k3s is enabled and running")


# Waits until the unit is active and the node Ready at the wanted version; on time-out
# says what to look at, with the end of k3s's journal.
WAIT_PROGRAM = r"""
import json, subprocess, sys, time
k3s, version, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3])
started = time.monotonic()
deadline, note = started + timeout, started + 15
last = "not asked yet"
while True:
    unit = subprocess.run(["systemctl", "is-active", "k3s"], capture_output=True, text=True,
                          timeout=30).stdout.strip()
    if unit == "active":
        done = subprocess.run([k3s, "kubectl", "get", "nodes", "-o", "json",
                               "--request-timeout=10s"], capture_output=True, text=True,
                              timeout=30)
        if done.returncode == 0:
            nodes = json.loads(done.stdout)["items"]
            seen = []
            for node in nodes:
                status = node.get("status", {})
                ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in status.get("conditions", []))
                running = status.get("nodeInfo", {}).get("kubeletVersion")
                name = node["metadata"]["name"]
                if ready and running == version:
                    print(f"node {name} is Ready with k3s {version} after "
                          f"{time.monotonic() - started:.0f} s")
                    sys.exit(0)
                seen.append(f"{name} {'Ready' if ready else 'NotReady'} {running}")
            last = "nodes: " + (", ".join(seen) or "none yet")
        else:
            last = " ".join((done.stderr or done.stdout).split())[-300:]
    else:
        last = "the k3s unit is " + (unit or "unknown")
    now = time.monotonic()
    if now > deadline:
        break
    if now > note:
        print(f"waiting for the node to be Ready with k3s {version}: {last}", flush=True)
        note = now + 15
    time.sleep(2)
journal = subprocess.run(["journalctl", "-u", "k3s", "-n", "25", "--no-pager"],
                         capture_output=True, text=True, timeout=30).stdout
sys.stderr.write(
    f"k3s {version} is not Ready after {timeout} s ({last}).\n"
    "Look at: systemctl status k3s; journalctl -u k3s -e; k3s kubectl get nodes -o wide; "
    "k3s kubectl describe node; k3s check-config\n"
    f"The end of k3s's journal:\n{journal}")
sys.exit(1)
"""


@operation()
def wait_ready(version: str, timeout: int = 300) -> Generator[Command, None, None]:
    """
    Wait until k3s runs and the node is Ready with ``version``, for ``timeout`` seconds
    at most; on time-out fail saying what to look at (unit, journal, node).
    """
    node = host.get_fact(K3sUnit)
    nodes = host.get_fact(K3sNodes)
    if node["active"] == "active" and any(
        n["ready"] and n["version"] == version for n in nodes["nodes"]
    ):
        host.noop(f"the node is Ready with k3s {version}")
        return
    yield _program("wait", INSTALL_PATH, version, str(int(timeout)))


def _refuse(state: Any, host: Any, lines: list[str]) -> bool:
    for line in lines:
        host.log_styled(line, fg="red", log_func=logger.error)
    return False


@operation()
def exposure_guard(
    allowed: Iterable[AllowedExposure] = DEFAULT_ALLOWED,
    vpn_address: str | None = None,
) -> Generator[Command, None, None]:
    """
    Fail when the cluster opens a port on the node that the allow-list does not name.

    ServiceLB and kube-proxy bypass UFW: a LoadBalancer or NodePort Service, external
    IPs, a ``hostPort`` or ``hostNetwork`` pod is public whatever the firewall says.
    Only ``allowed`` (by default Traefik's 80 and 443) may be, and external IPs that are
    all ``vpn_address`` (the admin surfaces on the VPN); anything else fails the deploy,
    each offending object named with its namespace.

    + allowed: the LoadBalancer Services allowed, with their ports
    + vpn_address: the node's VPN address, the one external IP allowed
    """
    entries = tuple(allowed)
    found = host.get_fact(K3sExposure)
    if found["error"] is not None:
        message = f"cannot list the cluster's Services and Pods: {found['error']}"
        yield FunctionCommand(_refuse, ([message],), {})
        return
    refused = refused_exposures(
        (Exposure.from_dict(e) for e in found["exposures"]), entries, vpn_address
    )
    if not refused:
        allowed_names = ", ".join(f"{e.namespace}/{e.service} {list(e.ports)}" for e in entries)
        on_vpn = f"; external IPs on {vpn_address} only" if vpn_address else ""
        host.noop(f"nothing public but the allowed ({allowed_names}{on_vpn})")
        return
    yield FunctionCommand(_refuse, (describe_refused(refused).splitlines(),), {})


def _stub(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = {"name": obj["metadata"]["name"]}
    if obj["kind"] not in CLUSTER_SCOPED:
        meta["namespace"] = obj["metadata"].get("namespace", "default")
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta}


def _key(obj: Mapping[str, Any]) -> str:
    kind, namespace, name = object_ref(obj)
    return f"{kind}/{namespace or '-'}/{name}"


def _listing(objects: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})


@operation()
def objects(
    manifests: list[dict[str, Any]], present: bool = True, leave_to_argocd: bool = False
) -> Generator[Command, None, None]:
    """
    Make the cluster hold ``manifests`` (each with its ``socle/manifest-sha256``
    annotation, see ``socle.k3s_manifests.with_digests``), or none of them.

    + manifests: the objects, digests included; Namespaces are applied first
    + present: ``False`` deletes those that exist (a Namespace takes its objects along)
    + leave_to_argocd: objects Argo CD tracks are its own from then on: left alone, so
      the deploy and Argo CD never take turns applying them (a bootstrap)

    Objects whose digest in the cluster is the wanted one are left alone, so a re-run
    applies nothing. Manifests go to ``k3s kubectl`` on its standard input.
    """
    for obj in manifests:
        if "socle/manifest-sha256" not in (obj.get("metadata", {}).get("annotations") or {}):
            raise OperationValueError(f"{_key(obj)} has no socle/manifest-sha256 annotation")
    current = host.get_fact(KubeObjectDigests, objects_json=json.dumps(
        [_stub(o) for o in manifests]))
    kubectl = QuoteString(INSTALL_PATH)
    if present:
        owned = {"argocd"} if leave_to_argocd else set()
        stale = [o for o in manifests if current is None or current.get(_key(o)) not in
                 {o["metadata"]["annotations"]["socle/manifest-sha256"], *owned}]
        if not stale:
            by_argocd = sum(current.get(_key(o)) == "argocd" for o in manifests) if current else 0
            host.noop(f"{len(manifests)} objects are as wanted"
                      + (f" ({by_argocd} of them Argo CD's)" if by_argocd else ""))
            return
        stale.sort(key=lambda o: o["kind"] != "Namespace")
        yield StringCommand("printf '%s'", QuoteString(_listing(stale)), "|", kubectl,
                            "kubectl apply -f -")
    else:
        existing = [o for o in manifests if current is None or _key(o) in current]
        if not existing:
            host.noop("none of these objects exist")
            return
        existing.sort(key=lambda o: o["kind"] == "Namespace")
        yield StringCommand("printf '%s'", QuoteString(_listing(_stub(o) for o in existing)),
                            "|", kubectl, "kubectl delete -f - --ignore-not-found --timeout=180s")


@operation()
def agent_kubeconfig(
    path: str, namespace: str, secret: str, server: str = "https://127.0.0.1:6443"
) -> Generator[Command, None, None]:
    """
    Write the agent's kubeconfig (root, 0600) from its ServiceAccount's token Secret.

    + path: e.g. ``/etc/socle/agent-kubeconfig``
    + namespace, secret: the token Secret, filled in by Kubernetes
    + server: the API address as the agent on the node reaches it

    The kubeconfig is built on the node from the Secret: the token never leaves the
    node, never shows in a command line or this program's output.
    """
    state = host.get_fact(AgentKubeconfig, path=path, namespace=namespace, secret=secret,
                          server=server)
    if state == "current":
        host.noop(f"{path} holds the agent's current token")
        return
    yield StringCommand("python3 -c", QuoteString(AGENT_KUBECONFIG_PROGRAM), "write",
                        QuoteString(path), QuoteString(namespace), QuoteString(secret),
                        QuoteString(server), QuoteString(INSTALL_PATH))


# Puts back the binary kept by the last upgrade and the datastore snapshot taken before
# it: both checked first; k3s stopped for the restore, started after.
ROLLBACK_PROGRAM = r"""
import glob, json, os, shutil, subprocess, sys, time
agent, installed, previous, images_dir, record_path = sys.argv[1:6]
record = json.load(open(record_path))
snapshot, old, new = record["snapshot"], record["previous_version"], record["upgraded_to"]
def run(*argv, timeout=3600):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
def fail(why):
    sys.stderr.write("k3s rollback stopped: " + why + "\n")
    sys.exit(1)
drill = run(agent, "drill", "k3s", "--snapshot", snapshot)
if drill.returncode != 0:
    fail(f"the snapshot {snapshot} taken before the upgrade fails its check: "
         + (drill.stderr or drill.stdout).strip()[-600:] + "\nNothing was changed.")
print(f"snapshot {snapshot} checked", flush=True)
run("systemctl", "stop", "k3s", timeout=300)
for _ in range(60):
    if run("systemctl", "is-active", "k3s", timeout=30).stdout.strip() in ("inactive", "failed"):
        break
    time.sleep(1)
restore = run(agent, "restore", "k3s", "--snapshot", snapshot)
if restore.returncode != 0:
    fail("socle-agent restore k3s said: " + (restore.stderr or restore.stdout).strip()[-800:]
         + f"\nk3s is stopped and its binary is still {new}: fix the cause and run the rollback"
         " again, or start k3s as it was with: systemctl start k3s")
print(restore.stdout.strip(), flush=True)
stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
aside = os.path.join(os.path.dirname(previous), f"k3s.rolled-back-from-{new}")
shutil.copyfile(installed, aside)
os.chmod(aside, 0o700)
temp = os.path.join(os.path.dirname(installed), ".k3s.socle-new")
shutil.copyfile(previous, temp)
os.chmod(temp, 0o755)
os.replace(temp, installed)
kept_images = previous + "-images"
if os.path.isdir(kept_images):  # the air-gap images as they were before the upgrade
    for image in glob.glob(os.path.join(images_dir, "k3s-airgap-images-*")):
        os.remove(image)
    for image in os.listdir(kept_images):
        shutil.copyfile(os.path.join(kept_images, image), os.path.join(images_dir, image))
os.replace(record_path, os.path.join(os.path.dirname(record_path), f"rollback-done-{stamp}.json"))
run("systemctl", "start", "--no-block", "k3s", timeout=60)
print(f"k3s {old} is back with the datastore of snapshot {snapshot}; {new} kept at {aside}")
"""


@operation()
def rollback(version: str, sha256: str) -> Generator[Command, None, None]:
    """
    Put back the k3s binary and the datastore snapshot from before the last upgrade.

    + version, sha256: the pin now in the versions file, which must be the previous
      release again (its sha256 that of the kept binary), so the next deploy does not
      upgrade once more

    The snapshot is checked (the agent's drill) before anything changes; then k3s is
    stopped, the agent restores the snapshot (moving the current datastore and server
    files aside, never deleting them), the previous binary goes back (the newer one is
    kept as ``k3s.rolled-back-from-<version>``) and k3s is started. Run ``wait_ready``
    after it.
    """
    node = host.get_fact(K3sInstall)
    try:
        needed = rollback_needed(node["rollback"], (node["version"], node["sha256"]),
                                 node["previous_sha256"], (version, sha256))
    except K3sRefused as refusal:
        raise OperationValueError(str(refusal)) from None
    if not needed:
        host.noop(f"k3s {version} runs, as pinned: nothing to roll back")
        return
    if not node["agent"]:
        raise OperationValueError(f"socle's agent ({AGENT}) is needed to restore the snapshot")
    arguments = (AGENT, INSTALL_PATH, PREVIOUS_BINARY, IMAGES_DIR, ROLLBACK_RECORD)
    yield _program("rollback", *arguments)


PROGRAMS = {"upgrade": UPGRADE_PROGRAM, "wait": WAIT_PROGRAM, "rollback": ROLLBACK_PROGRAM}
