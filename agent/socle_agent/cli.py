"""The `socle-agent` command line."""

from __future__ import annotations

import argparse
import sys

from socle_agent import __version__


def main(argv: list[str] | None = None) -> int:
    """Run the `socle-agent` command line and return its exit code."""
    parser = argparse.ArgumentParser(prog="socle-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"socle-agent {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
