"""The host's hardening files: what they turn off, what they keep for the platform."""

from __future__ import annotations

from typing import Any

import pytest

from socle.host_hardening import (
    KERNEL_MODULES_KEPT,
    audit_rules,
    login_banner,
    login_shell_profile,
    module_blacklist,
    never_banned,
    ssh_ban_jail,
)
from socle.inventory_checks import InventoryDataError

DATA: dict[str, Any] = {"wireguard_address": "10.8.0.1/24"}


def test_unused_modules_never_load_and_what_k3s_needs_stays_loadable() -> None:
    text = module_blacklist()
    lines = text.splitlines()

    for module in ("dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core", "udf"):
        assert f"blacklist {module}" in lines and f"install {module} /bin/true" in lines
    for module in KERNEL_MODULES_KEPT:
        assert not any(
            line.split()[1:2] == [module] for line in lines if not line.startswith("#")
        ), module
        assert f"#   {module}: " in text


def test_audit_rules_watch_identity_and_privilege_files() -> None:
    rules = audit_rules().splitlines()

    for path, key in (("/etc/shadow", "identity"), ("/etc/sudoers.d", "privilege")):
        assert f"-w {path} -p wa -k {key}" in rules


def test_ban_never_applies_to_loopback_the_vpn_or_the_operators() -> None:
    data = {**DATA, "ssh_never_ban": ["198.51.100.7", "2001:db8::/64", "10.8.0.5"]}

    assert never_banned(data) == [
        "127.0.0.0/8", "::1/128", "10.8.0.0/24", "198.51.100.7/32", "2001:db8::/64",
        "10.8.0.5/32",
    ]  # fmt: skip
    jail = ssh_ban_jail(data, 2222).splitlines()
    assert "port = 2222" in jail and "backend = systemd" in jail
    assert "ignoreip = 127.0.0.0/8 ::1/128 10.8.0.0/24 198.51.100.7/32" in " ".join(jail)


@pytest.mark.parametrize(
    ("value", "key"),
    [("203.0.113.0/33", "ssh_never_ban[0]"), ("any", "ssh_never_ban[0]"), ("x", "ssh_never_ban")],
)
def test_bad_never_ban_addresses_are_refused(value: str, key: str) -> None:
    data = {**DATA, "ssh_never_ban": value if key == "ssh_never_ban" else [value]}

    with pytest.raises(InventoryDataError) as refusal:
        never_banned(data)
    assert refusal.value.key == key


def test_banner_from_the_inventory_or_socle() -> None:
    assert "Authorised access only" in login_banner({})
    assert login_banner({"login_banner": "Private system.\n\n"}) == "Private system.\n"


@pytest.mark.parametrize("text", ["", "Escape \\n here", "Caf\u00e9", 42])
def test_banners_getty_would_misread_are_refused(text: Any) -> None:
    with pytest.raises(InventoryDataError, match="login_banner"):
        login_banner({"login_banner": text})


def test_login_shells_get_the_stricter_umask_and_no_core_dumps() -> None:
    profile = login_shell_profile().splitlines()

    assert "umask 027" in profile and "ulimit -c 0" in profile and "readonly TMOUT" in profile
    with pytest.raises(ValueError):
        login_shell_profile("0; rm -rf /")
