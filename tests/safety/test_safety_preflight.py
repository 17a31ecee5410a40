"""Issue 6 (6), without hosts: the preflight that `mailserver deploy` runs before connecting finds bad data
per host, and leaves valid hosts alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyinfra_mailserver.preflight import invalid_hosts


@dataclass
class _Data:
    values: dict[str, Any]

    def dict(self) -> dict[str, Any]:
        return dict(self.values)


@dataclass
class _Host:
    """The two attributes of a pyinfra host the preflight reads (no pyinfra import: no gevent here)."""

    name: str
    data: _Data


def test_invalid_hosts_are_named_and_valid_ones_pass() -> None:
    hosts = [
        _Host("good.safety.test", _Data({"mailserver": {}})),
        _Host("bad.safety.test", _Data({"mailserver": {"identity": {"inet_protocols": "ipv5"}}})),
        _Host("none.safety.test", _Data({})),
        _Host("distro.safety.test", _Data({"mailserver": {}, "mailserver_distro": "plan9"})),
    ]
    problems = invalid_hosts(hosts, None)
    assert set(problems) == {"bad.safety.test", "none.safety.test", "distro.safety.test"}
    assert "identity.inet_protocols" in problems["bad.safety.test"]
    assert "no `mailserver` data" in problems["none.safety.test"]
    assert "mailserver_distro 'plan9'" in problems["distro.safety.test"]
