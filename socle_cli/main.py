"""The `socle` operator command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from socle.versions import VERSIONS_FILE
from socle_cli import offsite_prune, vps_snapshot

REPO_ROOT = Path(__file__).resolve().parent.parent


def _wireguard_client_config(args: argparse.Namespace) -> int:
    from pyinfra.api.exceptions import PyinfraError

    from socle.sops_secrets import SopsError
    from socle_cli.inventory import InventoryLookupError
    from socle_cli.wireguard_client import ClientConfigError, write_client_config

    try:
        text = write_client_config(
            Path(args.inventory), args.peer, args.host, args.private_key_file
        )
    except (ClientConfigError, InventoryLookupError, PyinfraError, SopsError, OSError) as error:
        print(f"socle: {error}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
        return 0
    # The file may hold the admin's private key: readable by its owner only.
    descriptor = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as output:
        output.write(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _secrets_check(args: argparse.Namespace) -> int:
    from socle.secret_scan import scan_repository

    findings = scan_repository(args.repo)
    for finding in findings:
        print(finding)
    if findings:
        print(
            f"socle: {len(findings)} secret(s) in clear: encrypt them with sops "
            "(see README, Secrets), or mark a false alarm with `# not-a-secret: <why>`",
            file=sys.stderr,
        )
        return 1
    print("no secret in clear", file=sys.stderr)
    return 0


def _pins(args: argparse.Namespace) -> int:
    from socle.versions import VersionsError
    from socle_cli.pins import PinError, pin

    try:
        changes = pin(args.what, args.versions_file, check=args.check)
    except (PinError, VersionsError, OSError) as error:
        print(f"socle: {error}", file=sys.stderr)
        return 1
    for change in changes:
        print(("differs: " if args.check else "pinned: ") + change)
    if not changes:
        print(f"{args.versions_file} matches the publishers", file=sys.stderr)
    return 1 if args.check and changes else 0


def _verify(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from pyinfra.api.exceptions import PyinfraError

    from socle_cli.inventory import InventoryLookupError, load_hosts, node_session
    from socle_cli.verify import (
        Verdict,
        VerifyContext,
        now_utc,
        overall,
        render_markdown,
        run_checks,
        write_report,
    )

    started = now_utc()
    with ExitStack() as stack:
        try:
            hosts = load_hosts(args.inventory)
            host = args.host or (next(iter(hosts)) if len(hosts) == 1 else None)
            if host is None or host not in hosts:
                raise InventoryLookupError(f"choose a host with --host ({', '.join(hosts)})")
        except (InventoryLookupError, PyinfraError) as error:
            print(f"socle: {error}", file=sys.stderr)
            return 2
        try:
            node = stack.enter_context(node_session(args.inventory, host))
        except (InventoryLookupError, PyinfraError) as error:
            print(f"socle: {error}: the checks made on the node are not checked", file=sys.stderr)
            node = None
        context = VerifyContext(host_name=host, data=hosts[host], node=node, repo=args.repo)
        if args.all_ports:
            context.scan_ports = range(1, 65536)
        results = run_checks(context)
    report = render_markdown(host, results, started)
    sys.stdout.write(report)
    path = write_report(args.report_dir, host, report, started)
    print(f"report kept in {path}", file=sys.stderr)
    if overall(results) is Verdict.NO_GO:
        return 1
    if args.strict and any(r.verdict is Verdict.NOT_CHECKED for r in results):
        return 3
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `socle` command."""
    parser = argparse.ArgumentParser(prog="socle", description="socle operator commands")
    commands = parser.add_subparsers(dest="command")

    wireguard = commands.add_parser("wireguard", help="WireGuard VPN")
    wireguard_commands = wireguard.add_subparsers(dest="wireguard_command")
    client = wireguard_commands.add_parser(
        "client-config",
        help="write an admin's WireGuard client configuration from the inventory",
        description=(
            "Write the wg-quick configuration of one peer of the inventory: the server's "
            "endpoint and public key, AllowedIPs covering the VPN, pod and service ranges."
        ),
    )
    client.add_argument("--inventory", required=True, help="e.g. inventories/prod.py")
    client.add_argument("--peer", required=True, help="a name from wireguard_peers")
    client.add_argument("--host", help="the VPN host, when the inventory has several")
    client.add_argument(
        "--private-key-file",
        type=Path,
        help="the peer's private key, checked against its public key in the inventory",
    )
    client.add_argument("--output", "-o", type=Path, help="file to write (mode 0600)")
    client.set_defaults(handler=_wireguard_client_config)

    secrets = commands.add_parser("secrets", help="secrets in the repository")
    secrets_commands = secrets.add_subparsers(dest="secrets_command")
    check = secrets_commands.add_parser(
        "check",
        help="fail on any secret in clear in the repository, naming the file and line",
        description=(
            "Read every file git tracks or would add (ignored files aside) and fail on "
            "private keys, secret-named values, Kubernetes Secrets with data, and SOPS "
            "files with values left unencrypted. Test fixtures with throwaway keys are "
            "allowed by path (socle.secret_scan.FIXTURE_PATHS)."
        ),
    )
    check.add_argument("--repo", type=Path, default=Path("."), help="repository root")
    check.set_defaults(handler=_secrets_check)

    pins = commands.add_parser(
        "pins",
        help="fill versions.toml's checksums and digests in from their publishers",
        description=(
            "Read the k3s release's published sha256sum-<arch>.txt files and the PostgreSQL "
            "image's digest from its registry, and write them into the versions file. "
            "Nothing is computed locally; a publisher that does not answer leaves the file "
            "as it was."
        ),
    )
    pins.add_argument("what", nargs="?", choices=("k3s", "postgresql", "all"), default="all")
    pins.add_argument("--versions-file", type=Path, default=VERSIONS_FILE)
    pins.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a value differs"
    )
    pins.set_defaults(handler=_pins)

    verify = commands.add_parser(
        "verify",
        help="run each phase's proof against the host: a Go/No-Go report",
        description=(
            "Run the Go/No-Go checks against the host and print the report as Markdown; "
            "keep it in --report-dir. Exit 1 on No-Go; with --strict, exit 3 when a check "
            "could not run."
        ),
    )
    verify.add_argument("-i", "--inventory", type=Path, required=True)
    verify.add_argument("--host", help="the host, when the inventory has several")
    verify.add_argument("--report-dir", type=Path, default=Path("verify-reports"))
    verify.add_argument(
        "--repo", type=Path, default=REPO_ROOT, help="the repository checked for secrets in clear"
    )
    verify.add_argument(
        "--all-ports", action="store_true", help="scan all 65535 TCP ports (slower)"
    )
    verify.add_argument("--strict", action="store_true", help="a check not run fails too")
    verify.set_defaults(handler=_verify)

    from socle_cli.alerting import add_commands

    add_commands(commands)
    vps_snapshot.add_parser(commands)
    offsite_prune.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `socle` command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
