"""UFW rules written out as `ufw show added` prints them."""

from __future__ import annotations

import pytest

from socle.ufw_rules import UfwRule


@pytest.mark.parametrize(
    ("rule", "command"),
    [
        (UfwRule(port=22, proto="tcp"), "allow 22/tcp"),
        (UfwRule(port=6443, proto="tcp", interface="wg0"),
         "allow in on wg0 to any port 6443 proto tcp"),
        (UfwRule(route=True, interface="wg0", to="10.42.0.0/16"),
         "route allow in on wg0 to 10.42.0.0/16"),
        (UfwRule(source="10.42.0.0/16"), "allow from 10.42.0.0/16"),
        (UfwRule(source="10.42.0.0/16", port=53, proto="udp"),
         "allow from 10.42.0.0/16 to any port 53 proto udp"),
    ],
)
def test_rule_in_canonical_form(rule: UfwRule, command: str) -> None:
    assert rule.command() == command


def test_a_source_not_in_canonical_form_is_refused() -> None:
    with pytest.raises(ValueError, match="host bits"):
        UfwRule(source="10.42.0.1/16").command()
