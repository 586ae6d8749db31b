# Sourced by the scripts that set the machine up: they need root (packages, a container
# engine). Run as root they go on; run as a user they start again under sudo; where
# neither works they stop at once, saying so. So `scripts/test.sh` works both on a
# machine where one is root without sudo and on one where one uses sudo.
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -- "$BASH" "$0" "$@"
    fi
    echo "$(basename "$0") needs root (it installs packages and starts a container engine): run it as root, or install sudo." >&2
    exit 1
fi
