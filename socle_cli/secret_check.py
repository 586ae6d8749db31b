"""`socle secrets check`: fail on any secret in clear in the repository (socle.secret_scan)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from socle.secret_scan import scan_repository


def _check_command(args: argparse.Namespace) -> int:
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


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `secrets check` to the `socle` command line."""
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
    check.set_defaults(handler=_check_command)
