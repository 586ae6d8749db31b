#!/usr/bin/env bash
# Deploys socle's platform into a local test host and prints the proof of each phase.
# Sets the machine up first (as root): packages, container engine, virtual environment.
# `scripts/demo.sh --keep` leaves the hosts running for a look around.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/lib/as-root.sh"
cd "$repo"
bash scripts/setup-machine.sh
export SOPS_DISABLE_VERSION_CHECK=1
exec .venv/bin/python -m tests.demo "$@"
