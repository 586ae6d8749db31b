#!/usr/bin/env bash
# Runs socle's whole test suite on this machine, setting it up first (as root):
# system packages, the container engine for test hosts, the virtual environment.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/agent -k retention`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/lib/as-root.sh"
cd "$repo"
bash scripts/setup-machine.sh

export SOPS_DISABLE_VERSION_CHECK=1
echo "==> lint: ruff and mypy" >&2
.venv/bin/ruff check .
.venv/bin/mypy .
echo "==> no secret in clear in the repository" >&2
.venv/bin/socle secrets check

echo "==> tests" >&2
status=0
.venv/bin/pytest -ra "$@" || status=$?

# A run must leave no test host behind, whatever happened to it.
leaked="$(.venv/bin/python - <<'PY'
from tests.harness.engine import connect_engine
from tests.harness.hosts import LABEL, MANUAL_LABEL
client = connect_engine()
names = [
    c.name for c in client.containers.list(all=True, filters={"label": [f"{LABEL}=1"]})
    if c.labels.get(MANUAL_LABEL) != "1"
]
print(" ".join(names))
PY
)"
if [[ -n "$leaked" ]]; then
    echo "test hosts left behind after the run: $leaked" >&2
    status=1
fi
exit "$status"
