"""Any data, however wrong, ends in a MailServer or a ModelError listing problems — never a crash."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pyinfra_mailserver.model import MailServer, ModelError, validate_server

KEYS = [
    "identity",
    "relay",
    "local",
    "aliases",
    "virtual",
    "sasl",
    "tls",
    "services",
    "header_checks",
    "postfix_extra",
    "distro",
    "myhostname",
    "mynetworks",
    "domains",
    "mailboxes",
    "address",
    "password",
    "backend",
    "enabled",
    "port",
    "secret",
    "users",
    "name",
    "transport",
    "relayhost",
    "mode",
    "chroot",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.text(max_size=12),
    st.sampled_from(
        [
            "example.org",
            "mx.example.org",
            "10.0.0.0/8",
            "[::1]/128",
            "dovecot",
            "saslauthd",
            "a@example.org",
            "{PLAIN}x",
            "$6$x",
            "smtp:[10.0.0.1]:25",
            "pam",
            "files",
        ]
    ),
)
JSONISH = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.sampled_from(KEYS), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), JSONISH, max_size=6))
def test_any_data_validates_or_lists_problems(data: dict[str, Any]) -> None:
    try:
        server = validate_server(data, hostname="mx.example.org")
    except ModelError as exc:
        assert exc.problems and all(isinstance(p, str) and ": " in p for p in exc.problems)
    else:
        assert isinstance(server, MailServer)
