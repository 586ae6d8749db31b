"""The `socle` operator command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the `socle` command line and return its exit code."""
    parser = argparse.ArgumentParser(prog="socle", description="socle operator commands")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
