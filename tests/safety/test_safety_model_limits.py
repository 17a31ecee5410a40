"""Issue 6 (6), without hosts: inputs the model used to accept although Postfix/Dovecot fail on them at
run time (found while building the bad-input table) are refused with their field."""

from __future__ import annotations

import pytest

from pyinfra_mailserver.model import ModelError, validate_server

HOST = "mx1.safety.test"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"identity": {"message_size_limit": 10**30}}, "identity.message_size_limit"),
        ({"identity": {"mailbox_size_limit": 2**64}}, "identity.mailbox_size_limit"),
        ({"services": {"dovecot_listen": ["not an address!"]}}, "services.dovecot_listen"),
        ({"services": {"dovecot_listen": []}}, "services.dovecot_listen"),
    ],
)
def test_refused(data: dict[str, object], field: str) -> None:
    with pytest.raises(ModelError) as exc:
        validate_server(data, hostname=HOST)
    assert any(p.startswith(field) for p in exc.value.problems), exc.value.problems


@pytest.mark.parametrize("listen", [["*"], ["*", "::"], ["10.0.0.1"], ["[::1]"], ["mail.example.org"]])
def test_dovecot_listen_accepts_addresses(listen: list[str]) -> None:
    assert validate_server({"services": {"dovecot_listen": listen}}, hostname=HOST)
